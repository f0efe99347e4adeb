//! From a cached snapshot to what a reader is told: the status by age, the entries cut to
//! `limit`, and the ETag. Shared by the HTTP API and `ranq get`, so both answer alike.

use chrono::{DateTime, Utc};
use ranq_cache::{Cache, CacheError};
use ranq_core::{Entry, Freshness, FreshnessPolicy, GroupId, Snapshot, Version};
use serde::Serialize;

/// The body of a 200 answer (CONTRACT §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopResponse {
    pub group: GroupId,
    pub status: Freshness,
    pub version: Version,
    pub computed_at: DateTime<Utc>,
    pub age_ms: u64,
    pub entries: Vec<Entry>,
}

impl TopResponse {
    /// Derived from group, version and limit: the same snapshot cut the same way has the same tag.
    pub fn etag(&self) -> String {
        format!("\"{}-{}-{}\"", self.group, self.version, self.entries.len())
    }
}

/// What a read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Served: FRESH or STALE.
    Served(TopResponse, std::time::Duration),
    /// MISS: not cached, or older than `max_age` (with the age when there was a snapshot).
    Miss(Option<std::time::Duration>),
}

/// Classifies `snapshot` at `now` and cuts it to `limit` entries.
pub fn classify(snapshot: Option<Snapshot>, policy: &FreshnessPolicy, limit: usize, now: DateTime<Utc>) -> ReadOutcome {
    let Some(mut snapshot) = snapshot else { return ReadOutcome::Miss(None) };
    let age = snapshot.age_at(now);
    match policy.classify(age) {
        Freshness::Miss => ReadOutcome::Miss(Some(age)),
        status => {
            snapshot.entries.truncate(limit);
            let response = TopResponse {
                group: snapshot.group,
                status,
                version: snapshot.version,
                computed_at: snapshot.computed_at,
                age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                entries: snapshot.entries,
            };
            ReadOutcome::Served(response, age)
        }
    }
}

/// Reads and classifies one group's snapshot. A corrupt snapshot is logged and read as a MISS:
/// garbage is never served.
pub async fn read_top(
    cache: &Cache,
    policy: &FreshnessPolicy,
    group: GroupId,
    limit: usize,
) -> Result<ReadOutcome, CacheError> {
    let snapshot = match cache.snapshot(group).await {
        Ok(snapshot) => snapshot,
        Err(CacheError::Corrupt { key, reason }) => {
            tracing::warn!(%key, %reason, "corrupt snapshot read as a MISS");
            None
        }
        Err(e) => return Err(e),
    };
    Ok(classify(snapshot, policy, limit, Utc::now()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn snapshot(entries: u32) -> Snapshot {
        let entries =
            (1..=entries).map(|rank| Entry { rank, member: i64::from(rank), score: 100 - i64::from(rank) }).collect();
        Snapshot::new(7, 1_000_000_000_000_000, entries)
    }

    fn policy() -> FreshnessPolicy {
        FreshnessPolicy { stale_after: Duration::from_secs(2), max_age: Duration::from_secs(5) }
    }

    #[test]
    fn a_fresh_snapshot_is_cut_to_the_limit_with_its_age() {
        let s = snapshot(10);
        let now = s.computed_at + chrono::Duration::milliseconds(1500);
        let ReadOutcome::Served(r, _) = classify(Some(s), &policy(), 3, now) else { panic!("served") };
        assert_eq!((r.status, r.age_ms, r.entries.len()), (Freshness::Fresh, 1500, 3));
        assert_eq!(r.etag(), "\"7-1000000000000000-3\"");
    }

    #[test]
    fn old_snapshots_are_stale_then_missing() {
        let s = snapshot(1);
        let at = |secs| s.computed_at + chrono::Duration::seconds(secs);
        assert!(matches!(
            classify(Some(s.clone()), &policy(), 100, at(3)),
            ReadOutcome::Served(TopResponse { status: Freshness::Stale, .. }, _)
        ));
        assert_eq!(classify(Some(s.clone()), &policy(), 100, at(6)), ReadOutcome::Miss(Some(Duration::from_secs(6))));
        assert_eq!(classify(None, &policy(), 100, at(0)), ReadOutcome::Miss(None));
    }
}
