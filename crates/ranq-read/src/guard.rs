//! What keeps the public listener answering under more load than it can serve: a bound on
//! requests in flight, past which a request is refused at once with a 503 and `Retry-After`
//! (tower's load shedding: queueing would only make every answer late), and an optional
//! per-client rate (`read.client_rate`, tower_governor) answered with a 429 and `Retry-After`.
//!
//! Both refusals are JSON errors like any other, and cost no Redis round trip.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use ranq_runtime::Shutdown;
use ranq_runtime::settings::{ClientIp, ReadSettings};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower_governor::GovernorLayer;
use tower_governor::errors::GovernorError;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;

use crate::error::ApiError;

/// How often the rate limiter forgets clients that have been quiet long enough to be back at a
/// full burst, so a scan by many addresses does not grow its memory for good.
const FORGET_QUIET_EVERY: Duration = Duration::from_secs(10);

/// Who a client is: its address, as `read.client_ip` says to find it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientKey(ClientIp);

impl KeyExtractor for ClientKey {
    type Key = IpAddr;

    fn extract<T>(&self, request: &Request<T>) -> Result<IpAddr, GovernorError> {
        let forwarded = || {
            // The last entry is the one the nearest proxy added; the ones before it are whatever
            // the client claimed.
            let header = request.headers().get_all("x-forwarded-for").iter().next_back()?;
            header.to_str().ok()?.rsplit(',').next()?.trim().parse::<IpAddr>().ok()
        };
        let peer = || request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let ip = match self.0 {
            ClientIp::XForwardedFor => forwarded().or_else(peer),
            ClientIp::Peer => peer(),
        };
        // Every connection carries its peer (see `serve`), so this is for requests that did not
        // come through a socket at all; they share one bucket.
        Ok(client_of(ip.unwrap_or(IpAddr::from([0, 0, 0, 0]))))
    }
}

/// The client an address stands for. An IPv6 host is handed a whole /64 and can pick any address
/// in it, so the /64 is the client; an IPv4 address seen through an IPv6 socket is itself.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
        v4 @ IpAddr::V4(_) => v4,
    }
}

type Limiter = Arc<GovernorConfig<ClientKey, governor::middleware::NoOpMiddleware<governor::clock::QuantaInstant>>>;

/// The public listener's guards, built from the settings.
#[derive(Debug, Clone)]
pub(crate) struct Guards {
    in_flight: Arc<tokio::sync::Semaphore>,
    rate: Option<Limiter>,
}

impl Guards {
    pub(crate) fn new(read: &ReadSettings) -> Self {
        let rate = (read.client_rate > 0).then(|| {
            let period = Duration::from_secs(1) / read.client_rate;
            let config = GovernorConfigBuilder::default()
                .period(period.max(Duration::from_nanos(1)))
                .burst_size(read.client_burst)
                .key_extractor(ClientKey(read.client_ip))
                .finish();
            // `finish` refuses only a zero period or burst, which the settings' checks exclude.
            Arc::new(config.unwrap_or_else(|| unreachable!("client_rate and client_burst are checked at start-up")))
        });
        Self { in_flight: Arc::new(tokio::sync::Semaphore::new(read.max_in_flight)), rate }
    }

    /// Wraps `routes`: the rate limit first (it is cheaper), then the bound on requests in flight.
    pub(crate) fn apply<S: Clone + Send + Sync + 'static>(&self, routes: axum::Router<S>) -> axum::Router<S> {
        let shed = tower::ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async { ApiError::Overloaded }))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(self.in_flight.clone()));
        let routes = routes.route_layer(shed);
        match &self.rate {
            Some(config) => routes.route_layer(GovernorLayer::new(config.clone()).error_handler(rate_limited)),
            None => routes,
        }
    }

    /// Forgets quiet clients every few seconds until `shutdown`.
    pub(crate) async fn forget_quiet_clients(self, shutdown: Shutdown) {
        let Some(config) = self.rate else { return };
        let mut every = tokio::time::interval(FORGET_QUIET_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    config.limiter().retain_recent();
                    config.limiter().shrink_to_fit();
                }
                () = shutdown.wait() => return,
            }
        }
    }
}

fn rate_limited(error: GovernorError) -> Response<Body> {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => ApiError::RateLimited { retry_after: wait_time.max(1) },
        GovernorError::UnableToExtractKey | GovernorError::Other { .. } => ApiError::Internal("rate limit".into()),
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_its_slash_64_and_a_mapped_ipv4_one_its_address() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("an address");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("an address");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("an address");
        assert_eq!(client_of(a), client_of(b));
        assert_ne!(client_of(a), client_of(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("an address");
        assert_eq!(client_of(mapped), "192.0.2.7".parse::<IpAddr>().expect("an address"));
        assert_ne!(client_of("::ffff:192.0.2.8".parse().expect("an address")), client_of(mapped));
    }
}
