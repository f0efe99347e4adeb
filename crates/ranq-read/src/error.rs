//! Every answer of the read API that is not a leaderboard: the errors, each with its status and
//! stable `code`, and the two 404s that carry a body of their own (a MISS, a member not in the
//! top 100). Handlers return `Result<Response, ApiError>`; this is the one place that turns a
//! failure into JSON, so every error looks alike and input can produce a 4xx, never a 5xx.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ranq_core::{Freshness, GroupId, IdError, MemberId};

use crate::wire::{ErrorBody, MissBody, NotInTopBody};

/// The header that carries an answer's FRESH / STALE / MISS.
pub(crate) const STATUS_HEADER: &str = "x-ranq-status";

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
    /// `/readyz`: Redis does not answer.
    RedisUnreachable(String),
    Internal(String),
    /// Not cached, or older than `max_age`; a quarantined group says why it is not refreshed.
    Miss {
        group: GroupId,
        refresh_error: Option<String>,
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
            Self::CacheUnavailable(_) | Self::RedisUnreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
        let status = self.status();
        let (code, error) = match self {
            Self::Miss { group, refresh_error } => {
                return (status, [(STATUS_HEADER, "MISS")], Json(MissBody::new(group, refresh_error))).into_response();
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
            Self::RedisUnreachable(why) => ("redis_unreachable", why),
            Self::Internal(why) => ("internal", why),
        };
        (status, Json(ErrorBody { error, code })).into_response()
    }
}
