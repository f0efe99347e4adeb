//! `ranq-status` is the fleet at a glance — producer, queue, workers, freshness, quarantine — read
//! from Redis in a few round trips. `ranq status --json` prints [`StatusReport::to_json`] and the
//! read API serves the same object at `GET /v1/status`, so the terminal and the operations page
//! never disagree.
//!
//! Architecture Invariant: read-only, and never the source database: status answers while the
//! database is down, which is when an operator needs it most. This is why the read API may depend
//! on it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ranq_cache::{Cache, CacheError, FreshnessCounts, Quarantine};
use ranq_core::{FreshnessPolicy, LastTick, LeaderInfo, TickCounters};
use ranq_queue::{Queue, QueueError, QueueStats};
use serde_json::{Value, json};

/// Why a report could not be read: Redis did not answer.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// The cached groups whose age is at most `le` (and above the bucket before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeBucket {
    /// The upper bound; `None` for the last bucket, beyond every bound.
    pub le: Option<Duration>,
    pub count: u64,
}

/// Everything status shows, read at one moment.
#[derive(Debug, Clone)]
pub struct StatusReport {
    pub namespace: String,
    pub now: DateTime<Utc>,
    pub policy: FreshnessPolicy,
    pub leader: Option<LeaderInfo>,
    pub last_tick: Option<LastTick>,
    pub ticks: TickCounters,
    pub queue: QueueStats,
    pub groups: FreshnessCounts,
    /// Cached groups per age bucket, youngest first; the last bucket is unbounded.
    pub age_buckets: Vec<AgeBucket>,
    /// Quarantined groups in all, and the first few of them.
    pub quarantine: Quarantine,
}

impl StatusReport {
    /// Reads the report; `quarantine_shown` caps the quarantined groups listed (the count covers
    /// all of them). The reads run concurrently on the cache's multiplexed connection.
    pub async fn gather(
        cache: &Cache,
        queue: &Queue,
        policy: &FreshnessPolicy,
        quarantine_shown: usize,
    ) -> Result<Self, StatusError> {
        let now = Utc::now();
        let bounds = age_bucket_bounds(policy);
        let ledger = cache.ledger();
        let (queue_stats, ticks, last_tick, leader, groups, histogram, quarantine) = tokio::try_join!(
            async { queue.stats().await.map_err(StatusError::from) },
            async { ledger.counters().await.map_err(StatusError::from) },
            async { ledger.last_tick().await.map_err(StatusError::from) },
            async { ledger.leader().await.map_err(StatusError::from) },
            async { cache.freshness_counts(policy, now).await.map_err(StatusError::from) },
            async { cache.age_histogram(&bounds, now).await.map_err(StatusError::from) },
            async { cache.quarantined(quarantine_shown).await.map_err(StatusError::from) },
        )?;
        let age_buckets = bounds
            .iter()
            .copied()
            .map(Some)
            .chain([None])
            .zip(histogram)
            .map(|(le, count)| AgeBucket { le, count })
            .collect();
        Ok(Self {
            namespace: cache.keys().namespace().to_owned(),
            now,
            policy: *policy,
            leader,
            last_tick,
            ticks,
            queue: queue_stats,
            groups,
            age_buckets,
            quarantine,
        })
    }

    /// The report as the object of `ranq status --json` (see `docs/reference/http.md`).
    pub fn to_json(&self) -> Value {
        let f = &self.groups;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let quarantine: Vec<_> = self
            .quarantine
            .first
            .iter()
            .map(|(group, h)| {
                json!({ "group": group, "failures": h.failures, "error": h.error, "since": h.since(), "retry_at": h.retry_at() })
            })
            .collect();
        let ages = f.ages.map(|a| json!({ "p50": a.p50_ms, "p99": a.p99_ms, "max": a.max_ms }));
        let buckets: Vec<_> =
            self.age_buckets.iter().map(|b| json!({ "le_ms": b.le.map(ms), "count": b.count })).collect();
        json!({
            "namespace": self.namespace,
            "now": self.now,
            "policy": { "stale_after_ms": ms(self.policy.stale_after), "max_age_ms": ms(self.policy.max_age) },
            "leader": self.leader,
            "last_tick": self.last_tick,
            "ticks": self.ticks,
            "queue": { "pending": self.queue.pending, "running": self.queue.running, "dead": self.queue.dead },
            "workers": { "alive": self.queue.workers_alive },
            "groups": {
                "cached": f.cached, "fresh": f.fresh, "stale": f.stale, "expired": f.expired,
                "quarantined": self.quarantine.total, "age_ms": ages, "age_buckets": buckets,
            },
            "quarantine": quarantine,
        })
    }
}

/// The age buckets' upper bounds: quarters of `stale_after` (the FRESH range, where a healthy
/// fleet keeps nearly every group), then `max_age` (STALE); beyond it, MISS.
pub fn age_bucket_bounds(policy: &FreshnessPolicy) -> Vec<Duration> {
    let mut bounds: Vec<Duration> = (1..=4).map(|q| policy.stale_after * q / 4).collect();
    if policy.max_age > policy.stale_after {
        bounds.push(policy.max_age);
    }
    bounds.dedup();
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_the_fresh_range_in_quarters_then_stop_at_max_age() {
        let policy = FreshnessPolicy { stale_after: Duration::from_secs(90), max_age: Duration::from_secs(600) };
        let secs: Vec<u64> = age_bucket_bounds(&policy).iter().map(Duration::as_millis).map(|m| m as u64).collect();
        assert_eq!(secs, [22_500, 45_000, 67_500, 90_000, 600_000]);

        let flat = FreshnessPolicy { stale_after: Duration::from_secs(60), max_age: Duration::from_secs(60) };
        assert_eq!(age_bucket_bounds(&flat).last(), Some(&Duration::from_secs(60)), "no empty STALE bucket");
        assert_eq!(age_bucket_bounds(&flat).len(), 4);
    }
}
