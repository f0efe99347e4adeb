//! The web board: `/` (a group's leaderboard with its FRESH/STALE/MISS badge), `/ops` (the fleet
//! from `/v1/status`) and their assets, all embedded in the binary so `ranq serve` needs no files,
//! no CDN and no network beyond its own port.
//!
//! The pages are plain HTML, CSS and JavaScript modules (`crates/ranq-read/web/`) that only read
//! the public API, with the same polling a careful client would do: `If-None-Match` on every
//! poll, so an unchanged leaderboard costs a 304. Every page goes out with a strict
//! Content-Security-Policy (same origin only, no inline script or style) and is revalidated by
//! its ETag, so a new binary's pages replace the old ones at once.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::conditional::none_match;
use crate::error::ApiError;

/// Same origin only; no inline script, no inline style, no framing, forms post nowhere else.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset { name: $name, content_type: $content_type, body: include_bytes!(concat!("../web/", $name)) }
    };
}

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("ops.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("common.js", "text/javascript; charset=utf-8"),
    asset!("board.js", "text/javascript; charset=utf-8"),
    asset!("ops.js", "text/javascript; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// Each asset's ETag: a hash of its bytes, the same for the same binary.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let mut hasher = DefaultHasher::new();
            a.body.hash(&mut hasher);
            format!("\"{:016x}\"", hasher.finish())
        })
        .collect()
});

/// `GET /`: the leaderboard page.
pub(crate) async fn board(headers: HeaderMap) -> Result<Response, ApiError> {
    serve("index.html", &headers)
}

/// `GET /ops`: the operations page.
pub(crate) async fn ops(headers: HeaderMap) -> Result<Response, ApiError> {
    serve("ops.html", &headers)
}

/// `GET /assets/{name}`: a script, the style sheet or the icon.
pub(crate) async fn asset(name: Result<Path<String>, PathRejection>, headers: HeaderMap) -> Result<Response, ApiError> {
    let Path(name) = name.map_err(|_| ApiError::NoAsset("(undecodable)".into()))?;
    if name.ends_with(".html") {
        return Err(ApiError::NoRoute); // pages have their own paths
    }
    serve(&name, &headers)
}

fn serve(name: &str, request: &HeaderMap) -> Result<Response, ApiError> {
    let (i, asset) =
        ASSETS.iter().enumerate().find(|(_, a)| a.name == name).ok_or_else(|| ApiError::NoAsset(name.to_owned()))?;
    let etag = &ETAGS[i];
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    if asset.content_type.starts_with("text/html") {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    if none_match(request, etag) {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    Ok((StatusCode::OK, headers, asset.body).into_response())
}
