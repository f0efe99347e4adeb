//! `GET /v1/status`: the fleet report of `ranq status --json` (from `ranq-status`), for the
//! operations page and for anything that would rather poll HTTP than run the CLI.
//!
//! A report costs about ten Redis commands. Every open operations page asks for one every two
//! seconds, so reports are shared: one is gathered at most once per [`SHARED_FOR`] per process,
//! and requests arriving while it is gathered wait for it instead of gathering their own.

use std::time::Duration;

use axum::body::Bytes;
use ranq_cache::Cache;
use ranq_core::FreshnessPolicy;
use ranq_queue::{Queue, QueueOptions};
use ranq_status::{StatusError, StatusReport};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long one gathered report answers every request.
const SHARED_FOR: Duration = Duration::from_secs(1);

/// Quarantined groups listed (the count covers all of them), as in `ranq status`.
const QUARANTINE_SHOWN: usize = 10;

/// The shared report of one read process.
#[derive(Debug)]
pub(crate) struct SharedStatus {
    queue: Queue,
    policy: FreshnessPolicy,
    /// The last report's JSON and when it was gathered. Held across the gather, which makes
    /// concurrent requests wait for one gather rather than start their own.
    last: Mutex<Option<(Instant, Bytes)>>,
}

impl SharedStatus {
    /// `queue` must carry the workers' heartbeat settings: they decide which workers count as
    /// alive.
    pub(crate) fn new(cache: &Cache, queue: &QueueOptions, policy: FreshnessPolicy) -> Self {
        Self { queue: Queue::new(cache.connection(), cache.keys(), queue), policy, last: Mutex::new(None) }
    }

    /// The report as JSON, gathered now or at most [`SHARED_FOR`] ago. A failed gather is not
    /// kept: the next request tries again.
    pub(crate) async fn json(&self, cache: &Cache) -> Result<Bytes, StatusError> {
        let mut last = self.last.lock().await;
        if let Some((at, body)) = last.as_ref()
            && at.elapsed() < SHARED_FOR
        {
            return Ok(body.clone());
        }
        let report = StatusReport::gather(cache, &self.queue, &self.policy, QUARANTINE_SHOWN).await?;
        let body = Bytes::from(report.to_json().to_string());
        *last = Some((Instant::now(), body.clone()));
        Ok(body)
    }
}
