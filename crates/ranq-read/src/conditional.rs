//! Conditional requests: whether a request's `If-None-Match` already names the answer's ETag, so
//! that an unchanged leaderboard or page costs a 304 and no body.

use axum::http::{HeaderMap, header};

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
