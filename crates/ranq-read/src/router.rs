//! The routes of `ranq serve` and the layers every answer goes through (a timeout, `nosniff`).

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::handlers;
use crate::state::AppState;

pub(crate) fn router(state: AppState, request_timeout: Duration) -> Router {
    let pages = if state.status.is_some() {
        Router::new()
            .route("/", get(crate::web::board))
            .route("/ops", get(crate::web::ops))
            .route("/assets/{name}", get(crate::web::asset))
            .route("/v1/status", get(handlers::status))
    } else {
        Router::new()
    };
    pages
        .route("/v1/groups/{group}/top", get(handlers::top))
        .route("/v1/groups/{group}/members/{member}", get(handlers::member))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, request_timeout))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .with_state(state)
}
