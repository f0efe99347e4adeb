//! The read API's handlers. Each parses its input, asks `lookup` for the answer and shapes the
//! response; every failure is an [`ApiError`]. Their `utoipa::path` annotations are the OpenAPI
//! document's paths.

use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ranq_core::{IdError, TOP_N, parse_group_id, parse_limit, parse_member_id};

use crate::conditional::none_match;
use crate::error::{ApiError, STATUS_HEADER};
use crate::lookup::{Found, PreRendered, load, pre_rendered};
use crate::state::AppState;
use crate::wire::{ErrorBody, Health, MemberBody, MissBody, TopResponse};

/// How long `/readyz` waits for Redis's PING.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// A path that does not decode (percent-escapes that are not UTF-8) answers like any other bad
/// id: a JSON 400, not axum's plain-text rejection.
fn bad_path(rejection: &PathRejection) -> ApiError {
    ApiError::BadPath(rejection.body_text())
}

/// The `limit` parameter, read leniently from the raw query (unknown parameters are ignored).
fn limit_param(query: Option<&str>) -> Result<usize, IdError> {
    let raw = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "limit").map(|(_, v)| v.into_owned())
    });
    parse_limit(raw.as_deref())
}

/// The cached top-N of a group, with its freshness.
#[utoipa::path(
    get,
    path = "/v1/groups/{group}/top",
    tag = "leaderboards",
    params(
        ("group" = i64, Path, description = "Group id, a 64-bit integer"),
        ("limit" = Option<u32>, Query, description = "Entries to return, 1 to 100 (default 100)"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer"),
    ),
    responses(
        (status = 200, description = "FRESH or STALE", body = TopResponse, headers(
            ("X-Ranq-Status" = String, description = "FRESH or STALE"),
            ("ETag" = String, description = "Derived from group, version and limit"),
            ("Cache-Control" = String, description = "max-age: seconds until the answer turns STALE"),
        )),
        (status = 304, description = "Unchanged since the ETag in If-None-Match"),
        (status = 400, description = "Bad group id or limit", body = ErrorBody),
        (status = 404, description = "MISS", body = MissBody, headers(("X-Ranq-Status" = String, description = "MISS"))),
        (status = 503, description = "Redis does not answer, and this process holds no copy of the group young enough to serve", body = ErrorBody),
    ),
)]
pub(crate) async fn top(
    State(state): State<AppState>,
    group: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(group) = group.map_err(|rejection| bad_path(&rejection))?;
    let group = parse_group_id(&group)?;
    let limit = limit_param(query.as_deref())?;
    let answer = match pre_rendered(&state, group, limit) {
        Some(answer) => answer,
        None => {
            let Found { response, age } = load(&state, group, limit).await?;
            rendered(response, age)?
        }
    };
    let PreRendered { head, entries, age, body } = answer;
    let etag = crate::answer::etag_of(head.group, head.version, entries, head.quarantined);
    let mut out = HeaderMap::new();
    out.insert(STATUS_HEADER, HeaderValue::from_static(head.status.as_str()));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    let max_age = state.policy.fresh_for(age).as_secs();
    if let Ok(value) = HeaderValue::from_str(&format!("max-age={max_age}")) {
        out.insert(header::CACHE_CONTROL, value);
    }
    if none_match(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok((StatusCode::OK, out, body).into_response())
}

/// An answer read from Redis, serialised. About 45 bytes per entry plus the head: sized up
/// front, where axum's `Json` would start at 128 bytes and copy a 5 KB body several times as it
/// grows.
fn rendered(response: TopResponse, age: Duration) -> Result<PreRendered, ApiError> {
    let entries = response.entries.len();
    let mut body = Vec::with_capacity(256 + 48 * entries);
    serde_json::to_writer(&mut body, &response).map_err(|e| ApiError::Internal(format!("serialising failed: {e}")))?;
    Ok(PreRendered { head: TopResponse { entries: Vec::new(), ..response }, entries, age, body })
}

/// One member's cached rank and score in a group's top 100.
#[utoipa::path(
    get,
    path = "/v1/groups/{group}/members/{member}",
    tag = "leaderboards",
    params(
        ("group" = i64, Path, description = "Group id"),
        ("member" = i64, Path, description = "Member id"),
    ),
    responses(
        (status = 200, description = "FRESH or STALE", body = MemberBody),
        (status = 400, description = "Bad group or member id", body = ErrorBody),
        (status = 404, description = "MISS (the group is not cached) or not in the top 100", body = MissBody),
        (status = 503, description = "Redis does not answer, and this process holds no copy of the group young enough to serve", body = ErrorBody),
    ),
)]
pub(crate) async fn member(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((group, member)) = path.map_err(|rejection| bad_path(&rejection))?;
    let group = parse_group_id(&group)?;
    let member = parse_member_id(&member)?;
    let Found { response, .. } = load(&state, group, TOP_N).await?;
    let status = response.status;
    let Some(entry) = response.entries.iter().find(|e| e.member == member) else {
        return Err(ApiError::NotInTop { group, member, status });
    };
    let body = MemberBody {
        group,
        member,
        rank: entry.rank,
        score: entry.score,
        status,
        version: response.version,
        computed_at: response.computed_at,
        age_ms: response.age_ms,
    };
    Ok((StatusCode::OK, [(STATUS_HEADER, status.as_str())], axum::Json(body)).into_response())
}

/// The fleet at a glance: the object `ranq status --json` prints (leader, ticks, queue, workers,
/// freshness with an age histogram, quarantine). Gathered at most once a second per process.
#[utoipa::path(get, path = "/v1/status", tag = "operations", responses(
    (status = 200, description = "The report of `ranq status --json`", content_type = "application/json", body = Object),
    (status = 404, description = "The web board is off (`read.ui = false`)", body = ErrorBody),
    (status = 503, description = "Redis unavailable", body = ErrorBody),
))]
pub(crate) async fn status(State(state): State<AppState>) -> Result<Response, ApiError> {
    let shared = state.status.as_ref().ok_or(ApiError::NoRoute)?;
    let body = shared.json(&state.cache).await.map_err(ApiError::CacheUnavailable)?;
    Ok(([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-cache")], body).into_response())
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub(crate) async fn healthz() -> Response {
    axum::Json(Health { status: "ok" }).into_response()
}

/// Redis answers: the process can serve.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, body = Health),
    (status = 503, description = "Redis unreachable", body = ErrorBody),
))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, state.cache.ping()).await {
        Ok(Ok(())) => Ok(axum::Json(Health { status: "ready" }).into_response()),
        Ok(Err(e)) => Err(ApiError::RedisUnreachable(format!("redis unreachable: {e}"))),
        Err(_) => Err(ApiError::RedisUnreachable("redis did not answer within 2s".into())),
    }
}

/// Prometheus text: `ranq_reads_total{status}`, `ranq_cache_age_seconds`,
/// `ranq_read_refreshes_total{outcome}`, `ranq_read_miss_waits_total{outcome}`.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

/// Any path the router does not know.
pub(crate) async fn not_found() -> ApiError {
    ApiError::NoRoute
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
