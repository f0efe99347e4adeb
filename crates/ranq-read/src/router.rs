//! The routes of both listeners, and the layers their answers go through.
//!
//! The public listener serves what a leaderboard's users may see: the groups API, `/healthz`,
//! `/readyz`, `/openapi.json` and, with `read.ui`, the board (which reads only the groups API).
//! Its API routes are guarded (`guard`) and, with `read.cors_origins`, callable from browsers on
//! those origins. The admin listener serves the same and what only operators should see — the
//! operations page, `/v1/status` (host names, lease, the database's errors) and `/metrics` —
//! unguarded, the way an exporter's or a proxy's admin port is: it belongs on loopback or a
//! private network.
//!
//! Every answer but a leaderboard is compressed here (gzip or brotli, by `Accept-Encoding`); a
//! leaderboard comes compressed from its handler, once per snapshot (`encoding`), and this layer
//! leaves an answer that already has a `Content-Encoding` alone.

use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use axum::response::Response;
use axum::routing::get;
use ranq_runtime::settings::ReadSettings;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::error::{ApiError, STATUS_HEADER};
use crate::guard::Guards;
use crate::handlers;
use crate::metrics::Refused;
use crate::state::AppState;

/// How long a browser may keep a CORS preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// What both listeners serve to anyone allowed to reach them.
fn api() -> Router<AppState> {
    Router::new()
        .route("/v1/groups/{group}/top", get(handlers::top))
        .route("/v1/groups/{group}/members/{member}", get(handlers::member))
}

fn common(routes: Router<AppState>) -> Router<AppState> {
    routes
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/openapi.json", get(crate::openapi::openapi_json))
}

fn board(routes: Router<AppState>) -> Router<AppState> {
    routes.route("/", get(crate::web::board)).route("/assets/{name}", get(crate::web::asset))
}

/// The public listener's router.
pub(crate) fn public(state: AppState, read: &ReadSettings, guards: &Guards) -> Router {
    let routes = common(guards.apply(api()));
    let routes = if read.ui { board(routes) } else { routes };
    let routes = finish(routes, read.request_timeout, &state);
    let routes = match cors(&read.cors_origins) {
        Some(cors) => routes.layer(cors),
        None => routes,
    };
    routes.with_state(state)
}

/// The admin listener's router.
pub(crate) fn admin(state: AppState, read: &ReadSettings) -> Router {
    let routes = board(common(api()))
        .route("/ops", get(crate::web::ops))
        .route("/v1/status", get(handlers::status))
        .route("/metrics", get(handlers::metrics));
    finish(routes, read.request_timeout, &state).with_state(state)
}

/// Bodies shorter than this are sent as they are: compressing them saves next to nothing.
const COMPRESS_ABOVE: u16 = 256;

/// The fallbacks and the layers of every answer: a timeout (a JSON 503 like any other), the
/// count of refusals, compression of successful answers worth it, `nosniff`.
fn finish(routes: Router<AppState>, request_timeout: Duration, state: &AppState) -> Router<AppState> {
    let worth_it = DefaultPredicate::new()
        .and(SizeAbove::new(COMPRESS_ABOVE))
        .and(|status: StatusCode, _: Version, _: &HeaderMap, _: &Extensions| status.is_success());
    let timeout = tower::ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async { ApiError::TimedOut }))
        .layer(tower::timeout::TimeoutLayer::new(request_timeout));
    routes
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(timeout)
        .layer(axum::middleware::map_response_with_state(state.clone(), count_refusals))
        .layer(CompressionLayer::new().gzip(true).br(true).no_deflate().no_zstd().compress_when(worth_it))
        .layer(axum::middleware::map_response(weak_tag_when_compressed))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
}

/// A compressed body is another representation of the same resource, so its tag is the weak form
/// of the plain one's: either then revalidates either (the comparison is weak), and no two
/// different byte strings carry one strong tag.
async fn weak_tag_when_compressed(mut response: Response) -> Response {
    if response.headers().contains_key(header::CONTENT_ENCODING)
        && let Some(tag) = response.headers().get(header::ETAG)
        && !tag.as_bytes().starts_with(b"W/")
        && let Ok(weak) = HeaderValue::from_bytes(&[b"W/", tag.as_bytes()].concat())
    {
        response.headers_mut().insert(header::ETAG, weak);
    }
    response
}

/// Counts a refusal (the guards' and the timeout's answers carry why) in the metrics.
async fn count_refusals(State(state): State<AppState>, response: Response) -> Response {
    if let Some(&reason) = response.extensions().get::<Refused>() {
        state.metrics.record_refused(reason);
    }
    response
}

/// The CORS policy of `read.cors_origins`; `None` when it is empty. Only GET, with the one
/// request header the API reads, and the answer headers a client needs exposed.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Checked at start-up: every entry is an origin, which is a valid header value.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::HEAD])
            .allow_headers([header::IF_NONE_MATCH])
            .expose_headers([header::ETAG, HeaderName::from_static(STATUS_HEADER), header::RETRY_AFTER])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}
