//! The OpenAPI document of the read API, generated from the handlers and the body types they
//! send (utoipa), served at `/openapi.json` and checked in as `docs/openapi.json`; a test fails
//! when the two differ, so the document cannot drift from the code.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use crate::wire::{
    EntryDoc, ErrorBody, FreshnessDoc, Health, MemberBody, MemberMiss, MissBody, NotInTopBody, TopResponse,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ranq read API",
        description = "Pre-computed top-100 leaderboards, served from the cache only. Every answer \
                       says how fresh it is: FRESH, STALE (older than stale_after) or MISS (absent, \
                       or older than max_age).\n\n\
                       The operations tagged `admin` are served only on the admin listener \
                       (`read.admin_listen`); the others on both. Every answer carries \
                       `X-Content-Type-Options: nosniff`; with `read.cors_origins` set, answers to \
                       an allowed `Origin` carry the CORS headers, and `OPTIONS` preflights of the \
                       `leaderboards` operations are answered.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        crate::handlers::top,
        crate::handlers::member,
        crate::handlers::status,
        crate::handlers::healthz,
        crate::handlers::readyz,
        crate::handlers::metrics,
        openapi_json,
    ),
    components(schemas(
        TopResponse,
        EntryDoc,
        FreshnessDoc,
        MemberBody,
        MissBody,
        MemberMiss,
        ErrorBody,
        NotInTopBody,
        Health
    ))
)]
pub struct ApiDoc;

/// The document as served: made once, as every request would make the same.
static SERVED: std::sync::LazyLock<axum::body::Bytes> = std::sync::LazyLock::new(|| document().into());

/// The document, as served and as checked in.
pub fn document() -> String {
    let mut json = ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    json.push('\n');
    json
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses(
    (status = 200, content_type = "application/json", body = Object, headers(
        ("Vary" = String, description = "accept-encoding"),
        ("Content-Encoding" = String, description = "gzip or br, when Accept-Encoding asks for it"),
    )),
))]
pub(crate) async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], SERVED.clone()).into_response()
}
