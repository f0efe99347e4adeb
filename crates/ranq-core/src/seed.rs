//! Deterministic demo data: the same `--seed` gives the same scores on every machine and every
//! version of ranq, because the generator is specified here (SplitMix64) rather than borrowed from
//! a crate whose algorithm may change.

use crate::ids::{GroupId, MemberId};

/// One generated score row: `(member, score, seconds after the seed epoch of its last update)`.
pub type SeedRow = (MemberId, i64, i64);

/// Scores are drawn from a small range so that ties occur and the tie-breaks are exercised.
pub const SCORE_RANGE: u64 = 10_000;
/// Update times spread over one day.
pub const UPDATE_SPREAD_SECS: u64 = 86_400;

/// SplitMix64: tiny, fast, and fully specified.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// The rows of one group: members `1..=members`, each with a score and an update offset.
pub fn group_rows(seed: u64, group: GroupId, members: u32) -> Vec<SeedRow> {
    let mut rng = SplitMix64::new(seed ^ (group as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    (1..=i64::from(members))
        .map(|member| {
            let score = rng.below(SCORE_RANGE) as i64;
            let offset = rng.below(UPDATE_SPREAD_SECS) as i64;
            (member, score, offset)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_rows_other_seed_other_rows() {
        assert_eq!(group_rows(42, 1, 50), group_rows(42, 1, 50));
        assert_ne!(group_rows(42, 1, 50), group_rows(43, 1, 50));
        assert_ne!(group_rows(42, 1, 50), group_rows(42, 2, 50));
    }

    #[test]
    fn the_generator_is_splitmix64() {
        // Reference values of SplitMix64 seeded with 0.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn rows_are_in_range() {
        let rows = group_rows(7, 3, 200);
        assert_eq!(rows.len(), 200);
        assert!(
            rows.iter()
                .all(|&(_, s, o)| (0..SCORE_RANGE as i64).contains(&s) && (0..UPDATE_SPREAD_SECS as i64).contains(&o))
        );
    }
}
