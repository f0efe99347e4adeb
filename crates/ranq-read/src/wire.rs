//! Every body the read API sends, in one place: what clients parse, what the OpenAPI document
//! describes (utoipa reads these types), and what `ranq get --json` prints.
//!
//! `ranq-core` stays free of documentation dependencies, so its two types that appear in bodies
//! are described here by mirrors ([`EntryDoc`], [`FreshnessDoc`]); unit tests hold the mirrors to
//! the real serialisation. Ids and versions are spelled `i64` (what `GroupId`, `MemberId` and
//! `Version` are), which utoipa describes as an integer where it cannot see through an alias.
//!
//! Every body is closed: `deny_unknown_fields` is how utoipa is told to write
//! `additionalProperties: false`, so the document promises no field beyond those listed and a
//! strict client (or the conformance test) can hold the server to it.

use chrono::{DateTime, Utc};
use ranq_core::{Entry, Freshness, GroupId};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of a 200 answer of `GET /v1/groups/{group}/top`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopResponse {
    pub group: i64,
    #[schema(value_type = FreshnessDoc)]
    pub status: Freshness,
    /// Microseconds since the epoch at which the database was read; newer refreshes have larger
    /// versions.
    pub version: i64,
    pub computed_at: DateTime<Utc>,
    /// Age of the snapshot when this answer was made.
    pub age_ms: u64,
    /// At most `limit` entries, by rank.
    #[schema(value_type = Vec<EntryDoc>)]
    pub entries: Vec<Entry>,
    /// Set while the group is quarantined: that its refreshes fail (`ranq get` says why; the HTTP
    /// API does not). The entries are its last good snapshot, and age on as usual.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Present (true) only while the group is quarantined.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    pub quarantined: bool,
}

/// One ranked member (`ranq_core::Entry`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Entry)]
pub struct EntryDoc {
    /// 1-based, in the ranking order: score descending, then earliest update, then member id.
    pub rank: u32,
    pub member: i64,
    pub score: i64,
}

/// How fresh an answer is (`ranq_core::Freshness`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Freshness)]
#[serde(rename_all = "UPPERCASE")]
pub enum FreshnessDoc {
    /// No older than `stale_after`.
    Fresh,
    /// Older than `stale_after`, no older than `max_age`: served, flagged.
    Stale,
    /// Not cached, or older than `max_age`: not served.
    Miss,
}

/// `GET /v1/groups/{group}/members/{member}`: one member's cached rank.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    pub group: i64,
    pub member: i64,
    pub rank: u32,
    pub score: i64,
    #[schema(value_type = FreshnessDoc)]
    pub status: Freshness,
    pub version: i64,
    pub computed_at: DateTime<Utc>,
    pub age_ms: u64,
}

/// A 404 MISS: the group is not cached, or its snapshot is older than `max_age`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MissBody {
    pub error: String,
    /// Always `MISS`.
    pub status: &'static str,
    pub group: i64,
    /// Always `miss`.
    pub code: &'static str,
    /// Present (true) while the group is quarantined: its refreshes keep failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<bool>,
    /// While the group is quarantined: that its refreshes fail (the HTTP API never says why; the
    /// admin listener's `/v1/status` and `ranq get` do).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_error: Option<String>,
}

/// What the public API says of a quarantined group instead of the database's error, which may
/// name tables, hosts or data.
pub const QUARANTINED: &str = "refreshes of this group keep failing; operators see why in `ranq status`";

impl MissBody {
    /// The MISS of `group`; a quarantined group says so, with `refresh_error` (`ranq get` gives
    /// the real error, the HTTP API [`QUARANTINED`]).
    pub fn new(group: GroupId, refresh_error: Option<String>) -> Self {
        Self {
            error: format!("group {group} is not cached"),
            status: "MISS",
            group,
            code: "miss",
            quarantined: refresh_error.is_some().then_some(true),
            refresh_error,
        }
    }
}

/// Any other error: a human message and a stable machine-readable code.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub error: String,
    /// `bad_group`, `bad_limit`, `bad_member`, `bad_path`, `no_route`, `no_asset`,
    /// `method_not_allowed`, `rate_limited`, `overloaded`, `timed_out`, `cache_unavailable`,
    /// `redis_unreachable`, `internal`.
    pub code: &'static str,
}

/// A 404 for a member that is not in the group's cached top 100.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotInTopBody {
    pub error: &'static str,
    /// Always `not_in_top`.
    pub code: &'static str,
    pub group: i64,
    pub member: i64,
    #[schema(value_type = FreshnessDoc)]
    pub status: Freshness,
}

/// The two bodies of a member lookup's 404 (documentation only: each is sent as itself).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum MemberMiss {
    Miss(MissBody),
    NotInTop(NotInTopBody),
}

/// `/healthz` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// `ok` (alive) or `ready` (Redis answers).
    pub status: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirrors_serialise_like_the_core_types() {
        let entry = Entry { rank: 3, member: 42, score: -7 };
        let doc = EntryDoc { rank: 3, member: 42, score: -7 };
        assert_eq!(serde_json::to_value(entry).unwrap_or_default(), serde_json::to_value(doc).unwrap_or_default());
        let pairs = [
            (Freshness::Fresh, FreshnessDoc::Fresh),
            (Freshness::Stale, FreshnessDoc::Stale),
            (Freshness::Miss, FreshnessDoc::Miss),
        ];
        for (real, doc) in pairs {
            assert_eq!(serde_json::to_value(real).unwrap_or_default(), serde_json::to_value(doc).unwrap_or_default());
        }
    }
}
