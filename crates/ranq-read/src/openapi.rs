//! The OpenAPI document of the read API, generated from the handlers and the body types they
//! send (utoipa), served at `/openapi.json` and checked in as `docs/openapi.json`; a test fails
//! when the two differ, so the document cannot drift from the code.
//!
//! `ranq-core` stays free of documentation dependencies, so its two types that appear in bodies
//! are described here by mirrors ([`EntryDoc`], [`FreshnessDoc`]); unit tests hold the mirrors to
//! the real serialisation.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::response::TopResponse;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ranq read API",
        description = "Pre-computed top-100 leaderboards, served from the cache only. Every answer \
                       says how fresh it is: FRESH, STALE (older than stale_after) or MISS (absent, \
                       or older than max_age).",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        crate::routes::top,
        crate::routes::member,
        crate::routes::status,
        crate::routes::healthz,
        crate::routes::readyz,
        crate::routes::metrics,
        crate::routes::openapi_json,
    ),
    components(schemas(TopResponse, EntryDoc, FreshnessDoc, MemberBody, MissBody, ErrorBody, NotInTopBody, Health))
)]
pub struct ApiDoc;

/// The document, as served and as checked in.
pub fn document() -> String {
    let mut json = ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    json.push('\n');
    json
}

/// One ranked member (`ranq_core::Entry`).
#[derive(Debug, Serialize, ToSchema)]
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
pub struct MemberBody {
    pub group: i64,
    pub member: i64,
    pub rank: u32,
    pub score: i64,
    #[schema(value_type = FreshnessDoc)]
    pub status: ranq_core::Freshness,
    pub version: i64,
    pub computed_at: chrono::DateTime<chrono::Utc>,
    pub age_ms: u64,
}

/// A 404 MISS: the group is not cached, or its snapshot is older than `max_age`.
#[derive(Debug, Serialize, ToSchema)]
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
    /// Why the group's refreshes fail, while it is quarantined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_error: Option<String>,
}

/// Any other error: a human message and a stable machine-readable code.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// `bad_group`, `bad_limit`, `bad_member`, `bad_path`, `no_route`, `method_not_allowed`,
    /// `cache_unavailable`, `redis_unreachable`.
    pub code: &'static str,
}

/// A 404 for a member that is not in the group's cached top 100.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotInTopBody {
    pub error: &'static str,
    /// Always `not_in_top`.
    pub code: &'static str,
    pub group: i64,
    pub member: i64,
    #[schema(value_type = FreshnessDoc)]
    pub status: ranq_core::Freshness,
}

/// `/healthz` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (alive) or `ready` (Redis answers).
    pub status: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ranq_core::{Entry, Freshness};

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
