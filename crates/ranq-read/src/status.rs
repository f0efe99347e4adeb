//! `GET /v1/status`: the fleet report of `ranq status --json` (from `ranq-status`), for the
//! operations page and for anything that would rather poll HTTP than run the CLI.
//!
//! A report costs a few dozen Redis commands in a handful of round trips. Every open operations
//! page asks for one every two seconds, so reports are shared: one is gathered at most once per
//! [`SHARED_FOR`] per process, and requests arriving while it is gathered wait for it instead of
//! gathering their own. A failed gather is shared the same way, so a Redis in trouble is not
//! asked again by every waiting request.

use std::time::Duration;

use axum::body::Bytes;
use ranq_cache::Cache;
use ranq_core::FreshnessPolicy;
use ranq_queue::Queue;
use ranq_runtime::settings::WorkerSettings;
use ranq_status::StatusReport;
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
    /// The last gather's outcome (the report's JSON, or why there is none) and when it ended.
    /// Held across the gather, which makes concurrent requests wait for one gather rather than
    /// start their own.
    last: Mutex<Option<(Instant, Result<Bytes, String>)>>,
    /// Upper bound on one gather, short of the request timeout so the answer is ours (a 503
    /// with a reason), not the timeout layer's.
    gather_timeout: Duration,
}

impl SharedStatus {
    /// The workers' settings decide which workers count as alive.
    pub(crate) fn new(
        cache: &Cache,
        worker: &WorkerSettings,
        policy: FreshnessPolicy,
        request_timeout: Duration,
    ) -> Self {
        Self {
            queue: Queue::new(cache.redis(), cache.keys(), worker),
            policy,
            last: Mutex::new(None),
            gather_timeout: request_timeout.saturating_sub(Duration::from_millis(250)).max(Duration::from_millis(100)),
        }
    }

    /// The report as JSON, gathered now or at most [`SHARED_FOR`] ago; or why it could not be.
    pub(crate) async fn json(&self, cache: &Cache) -> Result<Bytes, String> {
        let mut last = self.last.lock().await;
        if let Some((at, outcome)) = last.as_ref()
            && at.elapsed() < SHARED_FOR
        {
            return outcome.clone();
        }
        let gathered = tokio::time::timeout(
            self.gather_timeout,
            StatusReport::gather(cache, &self.queue, &self.policy, QUARANTINE_SHOWN),
        )
        .await;
        let outcome = match gathered {
            Ok(Ok(report)) => Ok(Bytes::from(report.to_json().to_string())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("redis did not answer within {:?}", self.gather_timeout)),
        };
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }
}
