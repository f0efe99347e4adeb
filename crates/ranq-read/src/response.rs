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
        etag_of(self.group, self.version, self.entries.len(), self.quarantined)
    }
}

/// The ETag of an answer with `count` entries (see [`TopResponse::etag`]).
pub fn etag_of(group: GroupId, version: Version, count: usize, quarantined: bool) -> String {
    let q = if quarantined { "-q" } else { "" };
    format!("\"{group}-{version}-{count}{q}\"")
}

/// A snapshot's entries serialised once, so that an answer at any `limit` is a slice of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEntries {
    json: String,
    /// Where each entry's JSON ends in `json`.
    ends: Vec<usize>,
}

impl RenderedEntries {
    pub fn new(entries: &[Entry]) -> Self {
        let mut json = String::with_capacity(48 * entries.len());
        let mut ends = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            // Three integers: serialising cannot fail.
            json.push_str(&serde_json::to_string(entry).unwrap_or_default());
            ends.push(json.len());
        }
        Self { json, ends }
    }

    /// The first `limit` entries, comma-separated (the inside of a JSON array), and how many.
    pub fn first(&self, limit: usize) -> (&str, usize) {
        let count = limit.min(self.ends.len());
        let end = count.checked_sub(1).map_or(0, |last| self.ends[last]);
        (&self.json[..end], count)
    }
}

/// The body [`TopResponse`] serialises to, built from its head (`entries` ignored) and entries
/// rendered beforehand: byte for byte the same, which a unit test holds it to.
pub fn render_top(head: &TopResponse, entries: &str) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(entries.len() + 256);
    let _ = write!(
        out,
        r#"{{"group":{},"status":"{}","version":{},"computed_at":"#,
        head.group,
        head.status.as_str(),
        head.version
    );
    let _ = serde_json::to_writer(&mut out, &head.computed_at);
    let _ = write!(out, r#","age_ms":{},"entries":["#, head.age_ms);
    out.extend_from_slice(entries.as_bytes());
    out.push(b']');
    if let Some(error) = &head.error {
        out.extend_from_slice(br#","error":"#);
        let _ = serde_json::to_writer(&mut out, error);
    }
    if head.quarantined {
        out.extend_from_slice(br#","quarantined":true"#);
    }
    out.push(b'}');
    out
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
    let Some(mut snapshot) = snapshot else {
        return ReadOutcome::Miss { age: None, error: quarantine_error(health) };
    };
    match head(&snapshot, health.as_ref(), policy, now) {
        Err(age) => ReadOutcome::Miss { age: Some(age), error: quarantine_error(health) },
        Ok((mut response, age)) => {
            snapshot.entries.truncate(limit);
            response.entries = snapshot.entries;
            ReadOutcome::Served(response, age)
        }
    }
}

/// Everything of an answer but its entries (left empty), with the snapshot's age; `Err(age)`
/// when the snapshot is too old to serve. Shared by [`classify`] and the pre-rendered path, so
/// both answer alike.
pub fn head(
    snapshot: &Snapshot,
    health: Option<&GroupHealth>,
    policy: &FreshnessPolicy,
    now: DateTime<Utc>,
) -> Result<(TopResponse, std::time::Duration), std::time::Duration> {
    let age = snapshot.age_at(now);
    let status = match policy.classify(age) {
        Freshness::Miss => return Err(age),
        status => status,
    };
    let error = quarantine_error(health.cloned());
    let response = TopResponse {
        group: snapshot.group,
        status,
        version: snapshot.version,
        computed_at: snapshot.computed_at,
        age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
        entries: Vec::new(),
        quarantined: error.is_some(),
        error,
    };
    Ok((response, age))
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
    fn pre_rendered_answers_are_byte_for_byte_what_serde_writes() {
        let s = snapshot(5);
        let rendered = RenderedEntries::new(&s.entries);
        let now = s.computed_at + chrono::Duration::milliseconds(2500);
        let health = GroupHealth {
            failures: 3,
            error: "division by \"zero\"".into(),
            since_ms: 0,
            last_ms: 0,
            quarantined: true,
            retry_at_ms: None,
        };
        for limit in [1, 3, 5, 100] {
            for health in [None, Some(health.clone())] {
                let ReadOutcome::Served(full, _) = classify(Some(s.clone()), health, &policy(), limit, now) else {
                    panic!("served")
                };
                let (entries, count) = rendered.first(limit);
                assert_eq!(count, full.entries.len());
                let head = TopResponse { entries: Vec::new(), ..full.clone() };
                let expected = serde_json::to_vec(&full).expect("json");
                assert_eq!(String::from_utf8_lossy(&render_top(&head, entries)), String::from_utf8_lossy(&expected));
            }
        }
        assert_eq!(RenderedEntries::new(&[]).first(10), ("", 0));
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
