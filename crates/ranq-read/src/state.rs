//! What every request shares: the cache, the freshness policy, the metrics, and the optional
//! parts (refresh on read, in-memory copies, the fleet report) that settings switch on.

use std::sync::Arc;

use ranq_cache::Cache;
use ranq_core::FreshnessPolicy;

use crate::local::LocalSnapshots;
use crate::metrics::ReadMetrics;
use crate::on_miss::OnMissRefresh;
use crate::status::SharedStatus;

#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub cache: Cache,
    pub policy: FreshnessPolicy,
    /// How long a read waits for Redis: short of the request timeout, so that a Redis in trouble
    /// (a failover under way) gets an answer of ours — the last copy held, or a JSON 503 — rather
    /// than the timeout layer's.
    pub redis_wait: std::time::Duration,
    pub metrics: Arc<ReadMetrics>,
    /// Refresh on read; `None` when `read.on_miss` is `none`.
    pub on_miss: Option<Arc<OnMissRefresh>>,
    /// In-memory copies of snapshots; `None` when `read.local_ttl` is zero.
    pub local: Option<Arc<LocalSnapshots>>,
    /// The shared fleet report of `/v1/status` (admin listener).
    pub status: Arc<SharedStatus>,
}
