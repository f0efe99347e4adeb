//! `ranq-read` is the read API (`ranq serve`): it answers leaderboard requests from the snapshots
//! in Redis and says how fresh each answer is — FRESH, STALE, or MISS. It listens twice: the
//! public listener (`read.listen`) serves the groups API and the read-only board `/` to anyone;
//! the admin listener (`read.admin_listen`, loopback by default) adds the operations page `/ops`,
//! `/v1/status` and `/metrics`, which tell what only operators should know.
//!
//! Architecture Invariant: this crate never opens a database connection and does not depend on
//! `ranq-db`; everything it serves was computed by a worker. A slow or dead database cannot slow
//! a read.
//!
//! The build/run split follows zero2prod: [`Server::bind`] binds (port 0 in tests) and reports the
//! addresses; [`Server::run_until`] serves until shutdown, finishing requests in flight.
//!
//! Inside, dependencies point one way: `serve` (the accept loop) → `router` (the routes and
//! layers of each listener, `guard` for overload) → `handlers` (and `web`, `openapi`) → `lookup`
//! (the read path and its MISS wait) → `answer` (classification, shared with `ranq get`) →
//! `wire` (every body sent), `encoding` (compressed bodies); `error` turns failures into
//! responses for all of them.

pub mod answer;
mod conditional;
mod encoding;
mod error;
mod guard;
mod handlers;
mod local;
mod lookup;
mod metrics;
mod on_miss;
pub mod openapi;
mod router;
mod serve;
mod state;
mod status;
mod web;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ranq_cache::Cache;
use ranq_runtime::Shutdown;
use ranq_runtime::settings::Settings;

use crate::guard::Guards;
use crate::local::LocalSnapshots;
pub use crate::metrics::ReadMetrics;
pub use crate::on_miss::{Asked, Claim, OnMissRefresh};
use crate::serve::Limits;
use crate::state::AppState;
use crate::status::SharedStatus;

/// A bound, not yet running, read server.
#[derive(Debug)]
pub struct Server {
    public: (tokio::net::TcpListener, axum::Router),
    admin: (tokio::net::TcpListener, axum::Router),
    limits: Limits,
    guards: Guards,
    cache: Cache,
    local: Option<Arc<LocalSnapshots>>,
}

async fn listen(address: &str, key: &str, flag: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {address} ({key}): {e} (pick another address with {flag})"))
}

impl Server {
    /// Binds `settings.read.listen` and `settings.read.admin_listen` (port 0 for an ephemeral
    /// port). The worker settings tell `/v1/status` which workers count as alive; the producer's
    /// backlog bound holds for the refreshes reads ask for too.
    pub async fn bind(settings: &Settings, cache: Cache) -> anyhow::Result<Self> {
        let read = &settings.read;
        let public = listen(&read.listen, "read.listen", "--listen").await?;
        let admin = listen(&read.admin_listen, "read.admin_listen", "--admin-listen").await?;
        let local = LocalSnapshots::new(read.local_ttl, read.local_max_bytes.as_u64());
        let state = AppState {
            cache: cache.clone(),
            policy: read.freshness(),
            redis_wait: read.request_timeout.saturating_sub(Duration::from_millis(500)).max(Duration::from_millis(100)),
            metrics: Arc::new(ReadMetrics::new()),
            on_miss: OnMissRefresh::new(settings, &cache).map(Arc::new),
            local: local.clone(),
            status: Arc::new(SharedStatus::new(&cache, &settings.worker, read.freshness(), read.request_timeout)),
        };
        let guards = Guards::new(read);
        let limits = Limits {
            header_timeout: read.header_timeout,
            max_connections: read.max_connections,
            drain: settings.shutdown_timeout,
        };
        Ok(Self {
            public: (public, router::public(state.clone(), read, &guards)),
            admin: (admin, router::admin(state, read)),
            limits,
            guards,
            cache,
            local,
        })
    }

    /// The public listener's address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.public.0.local_addr()
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.0.local_addr()
    }

    /// Serves until `shutdown` is triggered, then stops accepting and drains open requests.
    pub async fn run_until(self, shutdown: Shutdown) -> anyhow::Result<()> {
        if let Some(local) = self.local {
            tokio::spawn(local.follow(self.cache, shutdown.clone()));
        }
        tokio::spawn(self.guards.forget_quiet_clients(shutdown.clone()));
        // The admin side needs no guard against its clients, only against running forever.
        let admin_limits = Limits { max_connections: 256, ..self.limits };
        tokio::join!(
            serve::serve(self.public.0, self.public.1, self.limits, shutdown.clone()),
            serve::serve(self.admin.0, self.admin.1, admin_limits, shutdown),
        );
        Ok(())
    }
}
