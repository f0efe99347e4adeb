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
use crate::encoding::{self, Coding};
use crate::error::{ApiError, STATUS_HEADER};
use crate::lookup::{Found, PreRendered, load, pre_rendered};
use crate::state::AppState;
use crate::wire::{ErrorBody, Health, MemberBody, MemberMiss, MissBody, TopResponse};

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
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Entries to return (default 100)"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer, plain or weak"),
        ("Accept-Encoding" = Option<String>, Header, description = "`gzip` and `br` are served compressed"),
    ),
    responses(
        (status = 200, description = "FRESH or STALE", body = TopResponse, headers(
            ("X-Ranq-Status" = String, description = "FRESH or STALE"),
            ("ETag" = String, description = "Derived from group, version and limit; weak (`W/`) on a compressed answer"),
            ("Cache-Control" = String, description = "max-age: seconds until the answer turns STALE"),
            ("Vary" = String, description = "accept-encoding"),
            ("Content-Encoding" = String, description = "gzip or br, when Accept-Encoding asks for it"),
        )),
        (status = 304, description = "Unchanged since the ETag in If-None-Match", headers(
            ("X-Ranq-Status" = String, description = "FRESH or STALE"),
            ("ETag" = String, description = "The answer's tag"),
            ("Cache-Control" = String, description = "max-age: seconds until the answer turns STALE"),
            ("Vary" = String, description = "accept-encoding"),
        )),
        (status = 400, description = "Bad group id or limit", body = ErrorBody),
        (status = 404, description = "MISS", body = MissBody, headers(("X-Ranq-Status" = String, description = "MISS"))),
        (status = 429, description = "This client is over `read.client_rate` (only when it is set)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may try again"))),
        (status = 503, description = "Overloaded (more than `read.max_in_flight` requests), the answer took longer than \
            `read.request_timeout`, or Redis does not answer and this process holds no copy of the group young \
            enough to serve", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
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
    let coding = encoding::negotiate(&headers);
    let answer = match pre_rendered(&state, group, limit, coding) {
        Some(answer) => answer,
        None => {
            let Found { response, age } = load(&state, group, limit).await?;
            // A revalidation that will be a 304 needs no body: neither serialise nor compress it.
            let tag =
                crate::answer::etag_of(response.group, response.version, response.entries.len(), response.quarantined);
            let body_wanted = !none_match(&headers, &tag);
            rendered(response, age, coding, body_wanted)?
        }
    };
    let PreRendered { head, entries, age, body, coding } = answer;
    let etag = crate::answer::etag_of(head.group, head.version, entries, head.quarantined);
    // A compressed answer is another representation of the same data: its tag is the weak form
    // of the plain one's, so either matches If-None-Match (the comparison is weak).
    let etag = if coding.is_some() { format!("W/{etag}") } else { etag };
    let mut out = HeaderMap::new();
    out.insert(STATUS_HEADER, HeaderValue::from_static(head.status.as_str()));
    out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
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
    if let Some(coding) = coding {
        out.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding.as_str()));
    }
    Ok((StatusCode::OK, out, body).into_response())
}

/// An answer read from Redis, serialised (and compressed whole, in `coding`) unless no body is
/// wanted. About 45 bytes per entry plus the head: sized up front, where axum's `Json` would
/// start at 128 bytes and copy a 5 KB body several times as it grows.
fn rendered(
    response: TopResponse,
    age: Duration,
    coding: Option<Coding>,
    body_wanted: bool,
) -> Result<PreRendered, ApiError> {
    if !body_wanted {
        let entries = response.entries.len();
        return Ok(PreRendered {
            head: TopResponse { entries: Vec::new(), ..response },
            entries,
            age,
            body: Vec::new(),
            coding,
        });
    }
    let entries = response.entries.len();
    let mut body = Vec::with_capacity(256 + 48 * entries);
    serde_json::to_writer(&mut body, &response).map_err(|e| ApiError::Internal(format!("serialising failed: {e}")))?;
    let body = match coding {
        Some(coding) => encoding::compress(coding, &body),
        None => body,
    };
    Ok(PreRendered { head: TopResponse { entries: Vec::new(), ..response }, entries, age, body, coding })
}

/// One member's cached rank and score in a group's top 100.
#[utoipa::path(
    get,
    path = "/v1/groups/{group}/members/{member}",
    tag = "leaderboards",
    params(
        ("group" = i64, Path, description = "Group id, a 64-bit integer"),
        ("member" = i64, Path, description = "Member id, a 64-bit integer"),
        ("Accept-Encoding" = Option<String>, Header, description = "`gzip` and `br` are served compressed"),
    ),
    responses(
        (status = 200, description = "FRESH or STALE", body = MemberBody, headers(
            ("X-Ranq-Status" = String, description = "FRESH or STALE"),
            ("Vary" = String, description = "accept-encoding"),
            ("Content-Encoding" = String, description = "gzip or br, when Accept-Encoding asks for it and the body is worth it"),
        )),
        (status = 400, description = "Bad group or member id", body = ErrorBody),
        (status = 404, description = "MISS (the group is not cached), or the member is not in its top 100", body = MemberMiss,
            headers(("X-Ranq-Status" = String, description = "MISS, or the group's FRESH or STALE"))),
        (status = 429, description = "This client is over `read.client_rate` (only when it is set)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may try again"))),
        (status = 503, description = "Overloaded, timed out, or Redis does not answer and this process holds no copy of \
            the group young enough to serve", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
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
#[utoipa::path(get, path = "/v1/status", tag = "admin", responses(
    (status = 200, description = "The report of `ranq status --json`", content_type = "application/json", body = Object, headers(
        ("Cache-Control" = String, description = "no-cache"),
        ("Vary" = String, description = "accept-encoding"),
        ("Content-Encoding" = String, description = "gzip or br, when Accept-Encoding asks for it"),
    )),
    (status = 503, description = "Redis unavailable, or the report took longer than `read.request_timeout`", body = ErrorBody,
        headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
))]
pub(crate) async fn status(State(state): State<AppState>) -> Result<Response, ApiError> {
    let body = state.status.json(&state.cache).await.map_err(ApiError::CacheUnavailable)?;
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
    (status = 503, description = "Redis unreachable", body = ErrorBody,
        headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, state.cache.ping()).await {
        Ok(Ok(())) => Ok(axum::Json(Health { status: "ready" }).into_response()),
        Ok(Err(e)) => Err(ApiError::RedisUnreachable(format!("redis unreachable: {e}"))),
        Err(_) => Err(ApiError::RedisUnreachable("redis did not answer within 2s".into())),
    }
}

/// Prometheus text: the `serve` series of the metrics reference (reads by status, snapshot ages,
/// refreshes asked for, MISS waits, unanswered reads, refusals, the in-memory copies' bytes).
#[utoipa::path(get, path = "/metrics", tag = "admin", responses(
    (status = 200, content_type = "text/plain", body = String, headers(
        ("Vary" = String, description = "accept-encoding"),
        ("Content-Encoding" = String, description = "gzip or br, when Accept-Encoding asks for it"),
    )),
))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    if let Some(local) = &state.local {
        state.metrics.set_copy_bytes(local.bytes());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

/// Any path the router does not know.
pub(crate) async fn not_found() -> ApiError {
    ApiError::NoRoute
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
