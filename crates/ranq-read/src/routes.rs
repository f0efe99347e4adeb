//! HTTP routes of the read API (CONTRACT §5). Every answer is JSON, including errors; input can
//! produce 4xx, never 5xx (a 503 means Redis is unreachable, which is not the client's doing).

use std::time::Duration;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ranq_core::{Freshness, GroupId, IdError, MemberId, parse_group_id, parse_limit};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::openapi::{ErrorBody, Health, MemberBody, MissBody, NotInTopBody};
use crate::response::{Fetched, ReadOutcome, TopResponse, classify, etag_of, fetch, head, read_top, render_top};
use crate::{AppState, Asked, Claim, OnMissRefresh};

const STATUS_HEADER: &str = "x-ranq-status";
/// How often a waiting MISS looks for the snapshot it asked for.
const WAIT_POLL: Duration = Duration::from_millis(10);

pub(crate) fn router(state: AppState, request_timeout: Duration) -> Router {
    let pages = if state.status.is_some() {
        Router::new()
            .route("/", get(crate::web::board))
            .route("/ops", get(crate::web::ops))
            .route("/assets/{name}", get(crate::web::asset))
            .route("/v1/status", get(status))
    } else {
        Router::new()
    };
    pages
        .route("/v1/groups/{group}/top", get(top))
        .route("/v1/groups/{group}/members/{member}", get(member))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, request_timeout))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .with_state(state)
}

/// Whether the request's `If-None-Match` names `etag` (or `*`). The comparison is weak (RFC 9110
/// §13.1.2): a proxy that compresses answers marks their tags `W/`, and they still match.
pub(crate) fn none_match(request: &HeaderMap, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let etag = opaque(etag);
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|tags| tags.split(','))
        .any(|tag| tag.trim() == "*" || opaque(tag) == etag)
}

/// A JSON error with a stable machine-readable `code` next to the human message.
pub(crate) fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    (status, axum::Json(ErrorBody { error: message.into(), code })).into_response()
}

fn bad_input(e: &IdError) -> Response {
    let code = match e {
        IdError::Group(_) => "bad_group",
        IdError::Limit(_) => "bad_limit",
    };
    error(StatusCode::BAD_REQUEST, code, e.to_string())
}

fn cache_unavailable(e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "read failed: cache unavailable");
    error(StatusCode::SERVICE_UNAVAILABLE, "cache_unavailable", "the cache is unavailable; try again shortly")
}

fn miss(group: GroupId, refresh_error: Option<String>) -> Response {
    (StatusCode::NOT_FOUND, [(STATUS_HEADER, "MISS")], axum::Json(crate::response::miss_body(group, refresh_error)))
        .into_response()
}

/// The `limit` parameter, read leniently from the raw query (unknown parameters are ignored).
fn limit_param(query: Option<&str>) -> Result<usize, IdError> {
    let raw = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "limit").map(|(_, v)| v.into_owned())
    });
    parse_limit(raw.as_deref())
}

/// Reads a group's snapshot and records the read; `Err` is the response to send instead.
///
/// A STALE answer asks for a refresh in the background; a MISS asks for one and, with
/// `read.miss_wait`, waits that long for it before answering. A quarantined group is left to its
/// slow retry.
async fn load(state: &AppState, group: GroupId, limit: usize) -> Result<(TopResponse, Duration), Response> {
    let started = tokio::time::Instant::now();
    match read_kept_or_fetched(state, group, limit).await {
        Ok(ReadOutcome::Served(response, age)) => {
            if response.status == Freshness::Stale && !response.quarantined {
                refresh_in_background(state, group);
            }
            state.metrics.record(response.status, Some(age));
            Ok((response, age))
        }
        Ok(ReadOutcome::Miss { age, error }) => {
            if error.is_none()
                && let Some(found) = refresh_and_wait(state, group, limit, started).await
            {
                state.metrics.record(found.0.status, Some(found.1));
                return Ok(found);
            }
            state.metrics.record(Freshness::Miss, age);
            Err(miss(group, error))
        }
        Err(e) => Err(cache_unavailable(&e)),
    }
}

/// [`read_top`], answered from the in-memory copy when there is a live one.
async fn read_kept_or_fetched(
    state: &AppState,
    group: GroupId,
    limit: usize,
) -> Result<ReadOutcome, ranq_cache::CacheError> {
    let Some(local) = &state.local else { return read_top(&state.cache, &state.policy, group, limit).await };
    let (snapshot, health) = match local.get(group) {
        Some(kept) => (kept.snapshot.clone(), kept.health.clone()),
        None => {
            let epoch = local.epoch();
            match fetch(&state.cache, group).await? {
                Fetched::Found { snapshot, health } => {
                    local.keep(group, epoch, snapshot.as_ref(), health.as_ref());
                    (snapshot, health)
                }
                corrupt @ Fetched::Corrupt { .. } => corrupt.into_parts(),
            }
        }
    };
    Ok(classify(snapshot, health, &state.policy, limit, chrono::Utc::now()))
}

fn refresh_in_background(state: &AppState, group: GroupId) {
    let Some(on_miss) = state.on_miss.clone().filter(|o| matches!(o.claim(group), Claim::Ours)) else { return };
    let (cache, metrics) = (state.cache.clone(), state.metrics.clone());
    // Short-lived: a Redis check and a push, each bounded by the connection's timeouts.
    tokio::spawn(async move { metrics.record_refresh(on_miss.push(&cache, group).await) });
}

/// Asks for a refresh of a missing group, then, if a job was pushed for it, polls for it until
/// `read.miss_wait` after the request's start; the served answer if it landed in time.
async fn refresh_and_wait(
    state: &AppState,
    group: GroupId,
    limit: usize,
    started: tokio::time::Instant,
) -> Option<(TopResponse, Duration)> {
    let on_miss = state.on_miss.as_ref()?;
    let deadline = started + on_miss.wait();
    let (asked, outcome) = match on_miss.claim(group) {
        Claim::Ours => {
            let asked = on_miss.push(&state.cache, group).await;
            (asked, Some(asked))
        }
        Claim::Recent { outcome } => (Asked::Recent, outcome),
    };
    state.metrics.record_refresh(asked);
    if on_miss.wait().is_zero() {
        return None;
    }
    // Another request's push still under way: learn what came of it before deciding to wait.
    let outcome = match outcome {
        Some(outcome) => Some(outcome),
        None => settled(on_miss, group, deadline).await,
    };
    if outcome != Some(Asked::Enqueued) {
        return None;
    }
    let found = wait_for_refresh(state, group, limit, deadline).await;
    state.metrics.record_wait(found.is_some());
    found
}

/// The outcome of the push another request is making for `group`, polled until `deadline`.
async fn settled(on_miss: &OnMissRefresh, group: GroupId, deadline: tokio::time::Instant) -> Option<Asked> {
    while tokio::time::Instant::now() < deadline {
        if let Some(outcome) = on_miss.outcome(group) {
            return Some(outcome);
        }
        tokio::time::sleep(WAIT_POLL.min(deadline.saturating_duration_since(tokio::time::Instant::now()))).await;
    }
    None
}

/// Polls for `group`'s snapshot until it is served or `deadline` passes.
async fn wait_for_refresh(
    state: &AppState,
    group: GroupId,
    limit: usize,
    deadline: tokio::time::Instant,
) -> Option<(TopResponse, Duration)> {
    for poll in 1.. {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(WAIT_POLL.min(left)).await;
        let read = tokio::time::timeout_at(deadline, read_top(&state.cache, &state.policy, group, limit)).await;
        if let Ok(Ok(ReadOutcome::Served(response, age))) = read {
            return Some((response, age));
        }
        // A worker that found the group absent leaves a tombstone and no snapshot: stop waiting.
        if poll % 10 == 0 && state.cache.is_gone(group).await.unwrap_or(false) {
            break;
        }
    }
    None
}

/// A path that does not decode (percent-escapes that are not UTF-8) answers like any other bad
/// id: a JSON 400, not axum's plain-text rejection.
fn bad_path(rejection: &PathRejection) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_path", format!("{}: ids are 64-bit integers", rejection.body_text()))
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
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn top(
    State(state): State<AppState>,
    group: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let group = match group {
        Ok(Path(group)) => group,
        Err(rejection) => return bad_path(&rejection),
    };
    let (group, limit) = match (parse_group_id(&group), limit_param(query.as_deref())) {
        (Ok(group), Ok(limit)) => (group, limit),
        (Err(e), _) | (_, Err(e)) => return bad_input(&e),
    };
    let (head, count, age, body) = match pre_rendered(&state, group, limit) {
        Some(found) => found,
        None => {
            let (response, age) = match load(&state, group, limit).await {
                Ok(found) => found,
                Err(response) => return response,
            };
            let count = response.entries.len();
            // ~45 bytes per entry plus the head: sized up front, where axum's `Json` would start
            // at 128 bytes and copy a 5 KB body several times as it grows.
            let mut body = Vec::with_capacity(256 + 48 * count);
            if let Err(e) = serde_json::to_writer(&mut body, &response) {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("serialising failed: {e}"));
            }
            (response, count, age, body)
        }
    };
    let etag = etag_of(head.group, head.version, count, head.quarantined);
    let mut out_headers = HeaderMap::new();
    out_headers.insert(STATUS_HEADER, HeaderValue::from_static(head.status.as_str()));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out_headers.insert(header::ETAG, value);
    }
    let max_age = state.policy.fresh_for(age).as_secs();
    if let Ok(value) = HeaderValue::from_str(&format!("max-age={max_age}")) {
        out_headers.insert(header::CACHE_CONTROL, value);
    }
    if none_match(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, out_headers).into_response();
    }
    out_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    (StatusCode::OK, out_headers, body).into_response()
}

/// The answer from a live in-memory copy, its entries rendered once when it was kept: no Redis,
/// no decoding, no serialising of entries. `None` sends the request down the ordinary path, as
/// does a copy too old to serve (a MISS also asks for a refresh). Returns the answer's head
/// (entries empty), its entry count, the snapshot's age and the body.
fn pre_rendered(state: &AppState, group: GroupId, limit: usize) -> Option<(TopResponse, usize, Duration, Vec<u8>)> {
    let copy = state.local.as_ref()?.get(group)?;
    let (snapshot, rendered) = (copy.snapshot.as_ref()?, copy.rendered.as_ref()?);
    let (head, age) = head(snapshot, copy.health.as_ref(), &state.policy, chrono::Utc::now()).ok()?;
    if head.status == Freshness::Stale && !head.quarantined {
        refresh_in_background(state, group);
    }
    state.metrics.record(head.status, Some(age));
    let (entries, count) = rendered.first(limit);
    let body = render_top(&head, entries);
    Some((head, count, age, body))
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
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn member(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let (group, member) = match path {
        Ok(Path(ids)) => ids,
        Err(rejection) => return bad_path(&rejection),
    };
    let group = match parse_group_id(&group) {
        Ok(group) => group,
        Err(e) => return bad_input(&e),
    };
    let Ok(member) = member.trim().parse::<MemberId>() else {
        return error(StatusCode::BAD_REQUEST, "bad_member", format!("member id {member:?} is not a 64-bit integer"));
    };
    let (response, _) = match load(&state, group, ranq_core::TOP_N).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let status = response.status;
    match response.entries.iter().find(|e| e.member == member) {
        Some(entry) => {
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
            (StatusCode::OK, [(STATUS_HEADER, status.as_str())], axum::Json(body)).into_response()
        }
        None => {
            let body = NotInTopBody { error: "member not in top 100", code: "not_in_top", group, member, status };
            (StatusCode::NOT_FOUND, [(STATUS_HEADER, status.as_str())], axum::Json(body)).into_response()
        }
    }
}

/// The fleet at a glance: the object `ranq status --json` prints (leader, ticks, queue, workers,
/// freshness with an age histogram, quarantine). Gathered at most once a second per process.
#[utoipa::path(get, path = "/v1/status", tag = "operations", responses(
    (status = 200, description = "The report of `ranq status --json` (CONTRACT §6)", content_type = "application/json", body = Object),
    (status = 404, description = "The web board is off (`read.ui = false`)", body = ErrorBody),
    (status = 503, description = "Redis unavailable", body = ErrorBody),
))]
pub(crate) async fn status(State(state): State<AppState>) -> Response {
    let Some(shared) = &state.status else { return not_found().await };
    match shared.json(&state.cache).await {
        Ok(body) => {
            ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
        }
        Err(e) => cache_unavailable(&e),
    }
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
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.cache.ping()).await {
        Ok(Ok(())) => axum::Json(Health { status: "ready" }).into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "redis_unreachable", format!("redis unreachable: {e}")),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "redis_unreachable", "redis did not answer within 2s"),
    }
}

/// Prometheus text: `ranq_reads_total{status}`, `ranq_cache_age_seconds`,
/// `ranq_read_refreshes_total{outcome}`, `ranq_read_miss_waits_total{outcome}`.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, content_type = "application/json", body = Object)))]
pub(crate) async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::document()).into_response()
}

pub(crate) async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no_route", "no such endpoint; see GET /v1/groups/{group}/top")
}

async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "only GET is supported")
}
