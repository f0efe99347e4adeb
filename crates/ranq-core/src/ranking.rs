//! The ranking order: `score DESC, updated_at ASC, member_id ASC`, a total order, so
//! every replica, every database and every test computes the same ranks.
//!
//! The databases apply this order in SQL; this module is the reference the tests hold them to, and
//! the place that turns ordered rows into ranked entries.

use std::cmp::Ordering;

use chrono::NaiveDateTime;

use crate::ids::MemberId;
use crate::snapshot::{Entry, TOP_N};

/// One source row of a group, before ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankedRow {
    pub member: MemberId,
    pub score: i64,
    pub updated_at: NaiveDateTime,
}

/// The ranking order: higher score first; on a tie the earlier `updated_at` (who got there first);
/// then the lower member id, so the order is total.
pub fn ranking_order(a: &RankedRow, b: &RankedRow) -> Ordering {
    b.score.cmp(&a.score).then(a.updated_at.cmp(&b.updated_at)).then(a.member.cmp(&b.member))
}

/// Sorts `rows` by the ranking order and keeps the top [`TOP_N`] as 1-based ranked entries.
pub fn rank_rows(mut rows: Vec<RankedRow>) -> Vec<Entry> {
    rows.sort_by(ranking_order);
    rows.into_iter()
        .take(TOP_N)
        .zip(1u32..)
        .map(|(row, rank)| Entry { rank, member: row.member, score: row.score })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn at(secs: i64) -> NaiveDateTime {
        DateTime::from_timestamp(secs, 0).expect("valid").naive_utc()
    }

    fn row(member: MemberId, score: i64, updated: i64) -> RankedRow {
        RankedRow { member, score, updated_at: at(updated) }
    }

    #[test]
    fn higher_scores_rank_first() {
        let ranked = rank_rows(vec![row(1, 10, 0), row(2, 30, 0), row(3, 20, 0)]);
        let members: Vec<_> = ranked.iter().map(|e| (e.rank, e.member)).collect();
        assert_eq!(members, vec![(1, 2), (2, 3), (3, 1)]);
    }

    #[test]
    fn ties_go_to_the_earlier_update_then_the_lower_member_id() {
        let ranked = rank_rows(vec![row(9, 50, 200), row(5, 50, 100), row(7, 50, 200), row(1, 10, 0)]);
        let members: Vec<_> = ranked.iter().map(|e| e.member).collect();
        assert_eq!(members, vec![5, 7, 9, 1]);
    }

    #[test]
    fn only_the_top_n_are_kept_with_contiguous_ranks() {
        let rows = (0..250).map(|m| row(m, m, 0)).collect();
        let ranked = rank_rows(rows);
        assert_eq!(ranked.len(), TOP_N);
        assert_eq!(ranked[0], Entry { rank: 1, member: 249, score: 249 });
        assert_eq!(ranked[99], Entry { rank: 100, member: 150, score: 150 });
    }

    #[test]
    fn an_empty_group_ranks_to_no_entries() {
        assert!(rank_rows(vec![]).is_empty());
    }
}
