//! `ranq-read` is the read API (`ranq serve`, CONTRACT §5): it answers leaderboard requests from
//! the snapshots in Redis and says how fresh each answer is — FRESH, STALE, or MISS. It also hosts
//! a small read-only web board on the same port: `/` shows a group's leaderboard, `/ops` the
//! fleet's status (`/v1/status`).
//!
//! Architecture Invariant: this crate never opens a database connection and does not depend on
//! `ranq-db`; everything it serves was computed by a worker. A slow or dead database cannot slow
//! a read.
//!
//! The build/run split follows zero2prod: [`Server::bind`] binds (port 0 in tests) and reports the
//! address; [`Server::run_until`] serves until shutdown, finishing requests in flight.

mod local;
mod metrics;
mod on_miss;
pub mod openapi;
pub mod response;
mod routes;
mod status;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use ranq_cache::Cache;
use ranq_core::FreshnessPolicy;
use ranq_queue::QueueOptions;
use ranq_runtime::Shutdown;
use ranq_runtime::settings::Settings;

use crate::local::LocalSnapshots;
pub use crate::metrics::ReadMetrics;
pub use crate::on_miss::{Asked, Claim, OnMissRefresh};
pub use crate::response::{TopResponse, read_top};
use crate::status::SharedStatus;

/// Shared state of every request.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub cache: Cache,
    pub policy: FreshnessPolicy,
    pub metrics: Arc<ReadMetrics>,
    /// Refresh on read; `None` when `read.on_miss` is `none`.
    pub on_miss: Option<Arc<OnMissRefresh>>,
    /// In-memory copies of snapshots; `None` when `read.local_ttl` is zero.
    pub local: Option<Arc<LocalSnapshots>>,
    /// The shared fleet report of `/v1/status`; `None` when `read.ui` is off (and the pages
    /// with it).
    pub status: Option<Arc<SharedStatus>>,
}

/// A bound, not yet running, read server.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    cache: Cache,
    local: Option<Arc<LocalSnapshots>>,
}

impl Server {
    /// Binds `settings.read.listen` (use port 0 for an ephemeral port). The worker settings tell
    /// `/v1/status` which workers count as alive.
    pub async fn bind(settings: &Settings, cache: Cache) -> anyhow::Result<Self> {
        let queue = QueueOptions {
            heartbeat: settings.worker.heartbeat,
            missed_heartbeats: settings.worker.missed_heartbeats,
            ..QueueOptions::default()
        };
        let settings = &settings.read;
        let listener = tokio::net::TcpListener::bind(&settings.listen).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {}: {e} (pick another address with --listen)", settings.listen)
        })?;
        let on_miss = OnMissRefresh::new(settings, &cache).map(Arc::new);
        let local = LocalSnapshots::new(settings.local_ttl);
        let state = AppState {
            cache: cache.clone(),
            policy: settings.freshness(),
            metrics: Arc::new(ReadMetrics::new()),
            on_miss,
            local: local.clone(),
            status: settings
                .ui
                .then(|| Arc::new(SharedStatus::new(&cache, &queue, settings.freshness(), settings.request_timeout))),
        };
        Ok(Self { listener, router: routes::router(state, settings.request_timeout), cache, local })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is triggered, then stops accepting and drains open requests.
    pub async fn run_until(self, shutdown: Shutdown) -> anyhow::Result<()> {
        if let Some(local) = self.local {
            tokio::spawn(local.follow(self.cache, shutdown.clone()));
        }
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await
            .map_err(|e| anyhow::anyhow!("read API failed: {e}"))
    }
}
