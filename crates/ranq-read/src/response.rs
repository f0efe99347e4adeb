//! From a cached snapshot to what a reader is told: the status by age, the entries cut to
//! `limit`, and the ETag. Shared by the HTTP API and `ranq get`, so both answer alike.

use chrono::{DateTime, Utc};
use ranq_cache::{Cache, CacheError};
use ranq_core::{Entry, Freshness, FreshnessPolicy, GroupHealth, GroupId, Snapshot, Version};
use serde::Serialize;

/// The body of a 200 answer (CONTRACT §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TopResponse {
    pub group: GroupId,
    #[schema(value_type = crate::openapi::FreshnessDoc)]
    pub status: Freshness,
    /// Microseconds since the epoch at which the database was read; newer refreshes have larger
    /// versions.
    pub version: Version,
    pub computed_at: DateTime<Utc>,
    /// Age of the snapshot when this answer was made.
    pub age_ms: u64,
    /// At most `limit` entries, by rank.
    #[schema(value_type = Vec<crate::openapi::EntryDoc>)]
    pub entries: Vec<Entry>,
    /// Set while the group is quarantined: why its refreshes fail. The entries are its last good
    /// snapshot, and age on as usual.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Present (true) only while the group is quarantined.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    pub quarantined: bool,
}

impl TopResponse {
    /// Derived from group, version and limit (and the quarantine flag, which changes the body):
    /// the same snapshot cut the same way has the same tag.
    pub fn etag(&self) -> String {
        let q = if self.quarantined { "-q" } else { "" };
        format!("\"{}-{}-{}{q}\"", self.group, self.version, self.entries.len())
    }
}

/// The quarantine part of an answer: the error, only while the group is quarantined.
fn quarantine_error(health: Option<GroupHealth>) -> Option<String> {
    health.filter(|h| h.quarantined).map(|h| h.error)
}

/// What a read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Served: FRESH or STALE.
    Served(TopResponse, std::time::Duration),
    /// MISS: not cached, or older than `max_age` (with the age when there was a snapshot, and
    /// the error when the group is quarantined).
    Miss { age: Option<std::time::Duration>, error: Option<String> },
}

/// Classifies `snapshot` at `now` and cuts it to `limit` entries.
pub fn classify(
    snapshot: Option<Snapshot>,
    health: Option<GroupHealth>,
    policy: &FreshnessPolicy,
    limit: usize,
    now: DateTime<Utc>,
) -> ReadOutcome {
    let error = quarantine_error(health);
    let Some(mut snapshot) = snapshot else { return ReadOutcome::Miss { age: None, error } };
    let age = snapshot.age_at(now);
    match policy.classify(age) {
        Freshness::Miss => ReadOutcome::Miss { age: Some(age), error },
        status => {
            snapshot.entries.truncate(limit);
            let response = TopResponse {
                group: snapshot.group,
                status,
                version: snapshot.version,
                computed_at: snapshot.computed_at,
                age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                entries: snapshot.entries,
                quarantined: error.is_some(),
                error,
            };
            ReadOutcome::Served(response, age)
        }
    }
}

/// The body of a 404 MISS (CONTRACT §5); a quarantined group also says why it is not refreshed.
pub fn miss_body(group: GroupId, refresh_error: Option<String>) -> crate::openapi::MissBody {
    crate::openapi::MissBody {
        error: format!("group {group} is not cached"),
        status: "MISS",
        group,
        code: "miss",
        quarantined: refresh_error.is_some().then_some(true),
        refresh_error,
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
    let (snapshot, health) = fetch(cache, group).await?.into_parts();
    Ok(classify(snapshot, health, policy, limit, Utc::now()))
}

/// What Redis holds for a group, before classification.
#[derive(Debug, Clone)]
pub enum Fetched {
    Found {
        snapshot: Option<Snapshot>,
        health: Option<GroupHealth>,
    },
    /// A value under the snapshot key that does not decode: read as a MISS, never kept.
    Corrupt {
        health: Option<GroupHealth>,
    },
}

impl Fetched {
    pub fn into_parts(self) -> (Option<Snapshot>, Option<GroupHealth>) {
        match self {
            Self::Found { snapshot, health } => (snapshot, health),
            Self::Corrupt { health } => (None, health),
        }
    }
}

/// Reads a group's snapshot and health in one round trip; a corrupt snapshot is logged.
pub async fn fetch(cache: &Cache, group: GroupId) -> Result<Fetched, CacheError> {
    let (snapshot, health) = cache.snapshot_and_health(group).await?;
    match snapshot {
        Ok(snapshot) => Ok(Fetched::Found { snapshot, health }),
        Err(CacheError::Corrupt { key, reason }) => {
            tracing::warn!(%key, %reason, "corrupt snapshot read as a MISS");
            Ok(Fetched::Corrupt { health })
        }
        Err(e) => Err(e),
    }
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
        let ReadOutcome::Served(r, _) = classify(Some(s), None, &policy(), 3, now) else { panic!("served") };
        assert_eq!((r.status, r.age_ms, r.entries.len()), (Freshness::Fresh, 1500, 3));
        assert_eq!(r.etag(), "\"7-1000000000000000-3\"");
    }

    #[test]
    fn old_snapshots_are_stale_then_missing() {
        let s = snapshot(1);
        let at = |secs| s.computed_at + chrono::Duration::seconds(secs);
        assert!(matches!(
            classify(Some(s.clone()), None, &policy(), 100, at(3)),
            ReadOutcome::Served(TopResponse { status: Freshness::Stale, .. }, _)
        ));
        assert_eq!(
            classify(Some(s.clone()), None, &policy(), 100, at(6)),
            ReadOutcome::Miss { age: Some(Duration::from_secs(6)), error: None }
        );
        assert_eq!(classify(None, None, &policy(), 100, at(0)), ReadOutcome::Miss { age: None, error: None });
    }

    #[test]
    fn a_quarantined_group_is_served_from_its_last_snapshot_with_the_error() {
        let s = snapshot(5);
        let now = s.computed_at + chrono::Duration::seconds(3);
        let health = |quarantined| GroupHealth {
            failures: 3,
            error: "division by zero".into(),
            since_ms: 0,
            last_ms: 0,
            quarantined,
            retry_at_ms: None,
        };
        let ReadOutcome::Served(r, _) = classify(Some(s.clone()), Some(health(true)), &policy(), 100, now) else {
            panic!("served")
        };
        assert_eq!((r.status, r.quarantined, r.error.as_deref()), (Freshness::Stale, true, Some("division by zero")));
        assert!(r.etag().ends_with("-q\""), "{}", r.etag());
        // Failing, but not yet quarantined: the answer is the plain one.
        let ReadOutcome::Served(r, _) = classify(Some(s), Some(health(false)), &policy(), 100, now) else {
            panic!("served")
        };
        assert_eq!((r.quarantined, r.error.as_deref()), (false, None));
        let json = serde_json::to_value(&r).expect("json");
        assert!(json.get("error").is_none() && json.get("quarantined").is_none(), "{json}");
    }
}
