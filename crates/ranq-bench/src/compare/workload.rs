//! The read workload every architecture of `ranq bench compare` is put under, and what is
//! recorded of each read.
//!
//! Reads arrive open-loop at a fixed rate — a slow answer does not slow the arrivals, as with real
//! users — and pick their group from a Zipf distribution (a few hot groups, a long tail) or
//! uniformly. The number of reads in flight is bounded; a read that finds no room is counted as
//! dropped rather than queued without limit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::distr::Distribution;
use ranq_core::GroupId;
use serde::Serialize;

use crate::cli::Skew;

/// Most reads in flight at once; beyond it a read is dropped and counted.
const MAX_IN_FLIGHT: usize = 4_096;

/// How a read was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Fresh,
    Stale,
    Miss,
}

/// One read's outcome, as an architecture reports it.
#[derive(Debug, Clone, Copy)]
pub struct Read {
    pub served: Served,
    /// Age of the data the reader got (none on a MISS).
    pub age: Option<Duration>,
    /// Nothing usable was cached when the read arrived: it paid for a computation, waited for
    /// someone else's, or went without.
    pub cold: bool,
}

/// An architecture's read path.
pub trait Reader: Send + Sync + 'static {
    fn read(&self, group: GroupId) -> impl std::future::Future<Output = anyhow::Result<Read>> + Send;
}

#[derive(Debug, Default)]
struct Samples {
    latency_us: Vec<u64>,
    cold_latency_us: Vec<u64>,
    age_ms: Vec<u64>,
    fresh: u64,
    stale: u64,
    miss: u64,
    errors: u64,
    dropped: u64,
}

/// Percentiles of the recorded reads.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct ReadFigures {
    pub reads: u64,
    pub fresh_share: f64,
    pub stale_share: f64,
    pub miss_share: f64,
    pub errors: u64,
    pub dropped: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    /// Reads that found nothing usable cached.
    pub cold_reads: u64,
    pub cold_latency_p50_ms: f64,
    pub cold_latency_p99_ms: f64,
    /// Age of the data readers were given.
    pub seen_age_p50_ms: u64,
    pub seen_age_p99_ms: u64,
    pub seen_age_max_ms: u64,
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Runs `rate` reads a second against `reader` for `duration`, then waits (boundedly) for the
/// reads still in flight.
pub async fn run<R: Reader>(
    reader: Arc<R>,
    groups: &[GroupId],
    rate: u32,
    skew: Skew,
    duration: Duration,
) -> ReadFigures {
    let samples = Arc::new(Mutex::new(Samples::default()));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let zipf = match skew {
        Skew::Zipf(s) => rand_distr::Zipf::new(groups.len() as f64, s).ok(),
        Skew::Uniform => None,
    };
    let mut pick = move || -> GroupId {
        let i = match &zipf {
            Some(z) => (z.sample(&mut rng) as usize).saturating_sub(1),
            None => rand::Rng::random_range(&mut rng, 0..groups.len()),
        };
        groups[i.min(groups.len() - 1)]
    };
    let every = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    while started.elapsed() < duration {
        ticks.tick().await;
        let group = pick();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            samples.lock().map(|mut s| s.dropped += 1).ok();
            continue;
        };
        let (reader, samples) = (reader.clone(), samples.clone());
        tasks.spawn(async move {
            let asked = Instant::now();
            let outcome = reader.read(group).await;
            let took = u64::try_from(asked.elapsed().as_micros()).unwrap_or(u64::MAX);
            drop(slot);
            let Ok(mut s) = samples.lock() else { return };
            match outcome {
                Ok(read) => {
                    s.latency_us.push(took);
                    if read.cold {
                        s.cold_latency_us.push(took);
                    }
                    if let Some(age) = read.age {
                        s.age_ms.push(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
                    }
                    match read.served {
                        Served::Fresh => s.fresh += 1,
                        Served::Stale => s.stale += 1,
                        Served::Miss => s.miss += 1,
                    }
                }
                Err(_) => s.errors += 1,
            }
        });
        // Reap finished reads as we go, so the set stays as small as what is in flight.
        while tasks.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    let mut s = std::mem::take(&mut *samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    s.latency_us.sort_unstable();
    s.cold_latency_us.sort_unstable();
    s.age_ms.sort_unstable();
    let reads = s.fresh + s.stale + s.miss;
    let share = |n: u64| if reads > 0 { n as f64 / reads as f64 } else { 0.0 };
    let ms = |us: u64| us as f64 / 1_000.0;
    ReadFigures {
        reads,
        fresh_share: share(s.fresh),
        stale_share: share(s.stale),
        miss_share: share(s.miss),
        errors: s.errors,
        dropped: s.dropped,
        latency_p50_ms: ms(percentile(&s.latency_us, 0.50)),
        latency_p99_ms: ms(percentile(&s.latency_us, 0.99)),
        cold_reads: s.cold_latency_us.len() as u64,
        cold_latency_p50_ms: ms(percentile(&s.cold_latency_us, 0.50)),
        cold_latency_p99_ms: ms(percentile(&s.cold_latency_us, 0.99)),
        seen_age_p50_ms: percentile(&s.age_ms, 0.50),
        seen_age_p99_ms: percentile(&s.age_ms, 0.99),
        seen_age_max_ms: s.age_ms.last().copied().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!((percentile(&v, 0.5), percentile(&v, 0.99), percentile(&[], 0.5)), (50, 99, 0));
    }
}
