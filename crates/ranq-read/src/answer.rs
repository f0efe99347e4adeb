//! From a cached snapshot to what a reader is told: the status by age, the entries cut to
//! `limit`, and the ETag. Shared by the HTTP API and `ranq get`, so both answer alike.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ranq_cache::{Cache, CacheError, Cached, Stored};
use ranq_core::{Entry, Freshness, FreshnessPolicy, GroupHealth, GroupId, Snapshot, Version};

use crate::wire::TopResponse;

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

    /// Every entry, comma-separated.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Where each entry ends in [`RenderedEntries::json`].
    pub fn ends(&self) -> &[usize] {
        &self.ends
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
    let mut out = render_head(head);
    out.extend_from_slice(entries.as_bytes());
    out.extend_from_slice(&render_tail(head));
    out
}

/// What comes before the entries in [`render_top`]; it always ends with `"entries":[`.
pub fn render_head(head: &TopResponse) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(160);
    let _ = write!(
        out,
        r#"{{"group":{},"status":"{}","version":{},"computed_at":"#,
        head.group,
        head.status.as_str(),
        head.version
    );
    let _ = serde_json::to_writer(&mut out, &head.computed_at);
    let _ = write!(out, r#","age_ms":{},"entries":["#, head.age_ms);
    out
}

/// What comes after the entries in [`render_top`].
pub fn render_tail(head: &TopResponse) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
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
    /// Served: FRESH or STALE, with the snapshot's age.
    Served { response: TopResponse, age: Duration },
    /// MISS: not cached, or older than `max_age` (with the age when there was a snapshot, and
    /// the error when the group is quarantined).
    Miss { age: Option<Duration>, error: Option<String> },
}

/// A snapshot judged by its age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// Young enough to serve: everything of the answer but its entries (left empty).
    Served { head: TopResponse, age: Duration },
    /// Older than `max_age`: a MISS.
    TooOld { age: Duration },
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
    match judge(&snapshot, health.as_ref(), policy, now) {
        Judged::TooOld { age } => ReadOutcome::Miss { age: Some(age), error: quarantine_error(health) },
        Judged::Served { head: mut response, age } => {
            snapshot.entries.truncate(limit);
            response.entries = snapshot.entries;
            ReadOutcome::Served { response, age }
        }
    }
}

/// Judges `snapshot` by its age at `now`. Shared by [`classify`] and the pre-rendered path, so
/// both answer alike.
pub fn judge(
    snapshot: &Snapshot,
    health: Option<&GroupHealth>,
    policy: &FreshnessPolicy,
    now: DateTime<Utc>,
) -> Judged {
    let age = snapshot.age_at(now);
    let status = match policy.classify(age) {
        Freshness::Miss => return Judged::TooOld { age },
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
    Judged::Served { head: response, age }
}

/// Reads and classifies one group's snapshot. A corrupt snapshot is read as a MISS: garbage is
/// never served.
pub async fn read_top(
    cache: &Cache,
    policy: &FreshnessPolicy,
    group: GroupId,
    limit: usize,
) -> Result<ReadOutcome, CacheError> {
    let Cached { stored, health } = cache.cached(group).await?;
    Ok(classify(servable(stored), health, policy, limit, Utc::now()))
}

/// The snapshot a reader may be answered from: none when it is absent or does not decode.
pub fn servable(stored: Stored) -> Option<Snapshot> {
    match stored {
        Stored::Found(snapshot) => Some(snapshot),
        Stored::Absent | Stored::Corrupt { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                let ReadOutcome::Served { response: full, .. } =
                    classify(Some(s.clone()), health, &policy(), limit, now)
                else {
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
        let ReadOutcome::Served { response: r, .. } = classify(Some(s), None, &policy(), 3, now) else {
            panic!("served")
        };
        assert_eq!((r.status, r.age_ms, r.entries.len()), (Freshness::Fresh, 1500, 3));
        assert_eq!(r.etag(), "\"7-1000000000000000-3\"");
    }

    #[test]
    fn old_snapshots_are_stale_then_missing() {
        let s = snapshot(1);
        let at = |secs| s.computed_at + chrono::Duration::seconds(secs);
        assert!(matches!(
            classify(Some(s.clone()), None, &policy(), 100, at(3)),
            ReadOutcome::Served { response: TopResponse { status: Freshness::Stale, .. }, .. }
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
        let ReadOutcome::Served { response: r, .. } =
            classify(Some(s.clone()), Some(health(true)), &policy(), 100, now)
        else {
            panic!("served")
        };
        assert_eq!((r.status, r.quarantined, r.error.as_deref()), (Freshness::Stale, true, Some("division by zero")));
        assert!(r.etag().ends_with("-q\""), "{}", r.etag());
        // Failing, but not yet quarantined: the answer is the plain one.
        let ReadOutcome::Served { response: r, .. } = classify(Some(s), Some(health(false)), &policy(), 100, now)
        else {
            panic!("served")
        };
        assert_eq!((r.quarantined, r.error.as_deref()), (false, None));
        let json = serde_json::to_value(&r).expect("json");
        assert!(json.get("error").is_none() && json.get("quarantined").is_none(), "{json}");
    }
}
