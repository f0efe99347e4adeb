//! Every answer of the read API that is not a leaderboard: the errors, each with its status and
//! stable `code`, and the two 404s that carry a body of their own (a MISS, a member not in the
//! top 100). Handlers return `Result<Response, ApiError>`; this is the one place that turns a
//! failure into JSON, so every error looks alike and input can produce a 4xx, never a 5xx.
//!
//! Bodies carry stable codes and text that is safe to show anyone: what Redis or the database
//! said goes to the log (and, for a quarantined group, to `/v1/status` on the admin listener),
//! never to a client of the public API.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ranq_core::{Freshness, GroupId, IdError, MemberId};

use crate::metrics::Refused;
use crate::wire::{ErrorBody, MissBody, NotInTopBody, QUARANTINED};

/// The header that carries an answer's FRESH / STALE / MISS.
pub(crate) const STATUS_HEADER: &str = "x-ranq-status";

/// `Retry-After` of every 503: a failover or a burst is over in about this long.
const RETRY_AFTER_SECS: &str = "1";

#[derive(Debug)]
pub(crate) enum ApiError {
    /// A group id, member id or limit that does not parse.
    BadInput(IdError),
    /// A path that does not decode (percent-escapes that are not UTF-8).
    BadPath(String),
    NoRoute,
    NoAsset(String),
    MethodNotAllowed,
    /// Redis failed or timed out on a read; the detail goes to the log.
    CacheUnavailable(String),
    /// `/readyz`: Redis does not answer; the detail goes to the log.
    RedisUnreachable(String),
    /// A bug, not the client's doing; the detail goes to the log.
    Internal(String),
    /// More requests in flight than `read.max_in_flight`.
    Overloaded,
    /// The answer took longer than `read.request_timeout`.
    TimedOut,
    /// This client is over `read.client_rate`; it may try again in `retry_after` seconds.
    RateLimited {
        retry_after: u64,
    },
    /// Not cached, or older than `max_age`; a quarantined group says so (not why).
    Miss {
        group: GroupId,
        quarantined: bool,
    },
    /// The group is cached, the member is not in its top 100.
    NotInTop {
        group: GroupId,
        member: MemberId,
        status: Freshness,
    },
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadInput(_) | Self::BadPath(_) => StatusCode::BAD_REQUEST,
            Self::NoRoute | Self::NoAsset(_) | Self::Miss { .. } | Self::NotInTop { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::CacheUnavailable(_) | Self::RedisUnreachable(_) | Self::Overloaded | Self::TimedOut => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<IdError> for ApiError {
    fn from(e: IdError) -> Self {
        Self::BadInput(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let refused = match self {
            Self::Overloaded => Some(Refused::Overloaded),
            Self::RateLimited { .. } => Some(Refused::RateLimited),
            Self::TimedOut => Some(Refused::TimedOut),
            _ => None,
        };
        let mut response = self.render();
        if let Some(reason) = refused {
            response.extensions_mut().insert(reason);
        }
        response
    }
}

impl ApiError {
    fn render(self) -> Response {
        let status = self.status();
        let (code, error) = match self {
            Self::Miss { group, quarantined } => {
                return (
                    status,
                    [(STATUS_HEADER, "MISS")],
                    Json(MissBody::new(group, quarantined.then(|| QUARANTINED.to_owned()))),
                )
                    .into_response();
            }
            Self::NotInTop { group, member, status: freshness } => {
                let body = NotInTopBody {
                    error: "member not in top 100",
                    code: "not_in_top",
                    group,
                    member,
                    status: freshness,
                };
                return (status, [(STATUS_HEADER, freshness.as_str())], Json(body)).into_response();
            }
            Self::BadInput(e @ IdError::Group(_)) => ("bad_group", e.to_string()),
            Self::BadInput(e @ IdError::Member(_)) => ("bad_member", e.to_string()),
            Self::BadInput(e @ IdError::Limit(_)) => ("bad_limit", e.to_string()),
            Self::BadPath(why) => ("bad_path", format!("{why}: ids are 64-bit integers")),
            Self::NoRoute => ("no_route", "no such endpoint; see GET /v1/groups/{group}/top".into()),
            Self::NoAsset(name) => ("no_asset", format!("no asset named {name:?}")),
            Self::MethodNotAllowed => ("method_not_allowed", "only GET is supported".into()),
            Self::CacheUnavailable(detail) => {
                tracing::warn!(error = %detail, "read failed: cache unavailable");
                ("cache_unavailable", "the cache is unavailable; try again shortly".into())
            }
            Self::RedisUnreachable(detail) => {
                tracing::warn!(error = %detail, "not ready: redis does not answer");
                ("redis_unreachable", "redis does not answer".into())
            }
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                ("internal", "internal error".into())
            }
            Self::Overloaded => ("overloaded", "too many requests in flight; try again shortly".into()),
            Self::TimedOut => ("timed_out", "the answer took too long; try again shortly".into()),
            Self::RateLimited { retry_after } => {
                let body = ErrorBody {
                    error: format!("too many requests; try again in {retry_after}s"),
                    code: "rate_limited",
                };
                return (status, [(header::RETRY_AFTER, retry_after.to_string())], Json(body)).into_response();
            }
        };
        let body = Json(ErrorBody { error, code });
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return (status, [(header::RETRY_AFTER, RETRY_AFTER_SECS)], body).into_response();
        }
        (status, body).into_response()
    }
}
