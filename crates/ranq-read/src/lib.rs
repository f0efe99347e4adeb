//! `ranq-read` is the read API (`ranq serve`): it answers leaderboard requests from the snapshots
//! in Redis and says how fresh each answer is — FRESH, STALE, or MISS. It also hosts a small
//! read-only web board on the same port: `/` shows a group's leaderboard, `/ops` the fleet's
//! status (`/v1/status`).
//!
//! Architecture Invariant: this crate never opens a database connection and does not depend on
//! `ranq-db`; everything it serves was computed by a worker. A slow or dead database cannot slow
//! a read.
//!
//! The build/run split follows zero2prod: [`Server::bind`] binds (port 0 in tests) and reports the
//! address; [`Server::run_until`] serves until shutdown, finishing requests in flight.
//!
//! Inside, dependencies point one way: `router` → `handlers` (and `web`, `openapi`) → `lookup`
//! (the read path and its MISS wait) → `answer` (classification, shared with `ranq get`) →
//! `wire` (every body sent); `error` turns failures into responses for all of them.

pub mod answer;
mod conditional;
mod error;
mod handlers;
mod local;
mod lookup;
mod metrics;
mod on_miss;
pub mod openapi;
mod router;
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

use crate::local::LocalSnapshots;
pub use crate::metrics::ReadMetrics;
pub use crate::on_miss::{Asked, Claim, OnMissRefresh};
use crate::state::AppState;
use crate::status::SharedStatus;

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
    /// `/v1/status` which workers count as alive; the producer's backlog bound holds for the
    /// refreshes reads ask for too.
    pub async fn bind(settings: &Settings, cache: Cache) -> anyhow::Result<Self> {
        let read = &settings.read;
        let listener = tokio::net::TcpListener::bind(&read.listen).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {}: {e} (pick another address with --listen)", read.listen)
        })?;
        let local = LocalSnapshots::new(read.local_ttl);
        let status = read
            .ui
            .then(|| Arc::new(SharedStatus::new(&cache, &settings.worker, read.freshness(), read.request_timeout)));
        let state = AppState {
            cache: cache.clone(),
            policy: read.freshness(),
            redis_wait: read.request_timeout.saturating_sub(Duration::from_millis(500)).max(Duration::from_millis(100)),
            metrics: Arc::new(ReadMetrics::new()),
            on_miss: OnMissRefresh::new(settings, &cache).map(Arc::new),
            local: local.clone(),
            status,
        };
        Ok(Self { listener, router: router::router(state, read.request_timeout), cache, local })
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
