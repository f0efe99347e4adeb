//! `ranq worker`: the apalis worker wiring, kept in one place.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apalis::prelude::*;
use ranq_cache::{Cache, QuarantinePolicy};
use ranq_core::Incoming;
use ranq_db::Source;
use ranq_queue::{Queue, TickPoll, worker_name};
use ranq_runtime::{Settings, Shutdown};

use crate::batcher::{BatchError, Batcher, BatcherOptions, Refreshed, Refresher, RetryPolicy, TotalsNow};

/// How often the worker logs what it refreshed.
const SUMMARY_EVERY: Duration = Duration::from_secs(30);
/// How often finished jobs are removed from Redis.
const VACUUM_EVERY: Duration = Duration::from_secs(5);

/// Deliveries of one job before it goes to the dead letter.
#[derive(Debug, Clone, Copy)]
struct MaxAttempts(usize);

/// apalis-redis puts a failed job back at the head of the queue at once, so a database outage of
/// a few seconds would use up every delivery of the jobs in flight and fill the dead letter. A
/// job whose batch failed as a whole therefore waits before it goes back: 1 s after its first
/// delivery, doubling up to 30 s, with equal jitter (half of each wait is random), so that
/// `max_attempts` (8) deliveries span at least 45 s of outage, about 70 s on average. Shutdown
/// cuts the wait short.
const REQUEUE_FIRST: Duration = Duration::from_secs(1);
const REQUEUE_MAX: Duration = Duration::from_secs(30);

/// What a handler needs to wait before handing a job back.
#[derive(Debug, Clone)]
struct Requeue {
    shutdown: Shutdown,
}

/// The job handler: hand the group to the batcher and wait for its write.
///
/// * A payload that is not a refresh job can never succeed: straight to the dead letter.
/// * A group that failed on its own is acked: its failure is recorded for quarantine, and the
///   producer's next tick tries it again (or, once quarantined, its retry time does).
/// * A batch that failed as a whole (the database or Redis down, after in-process retries) goes
///   back to the queue after a growing wait ([`REQUEUE_FIRST`]), until its last attempt, which
///   sends it to the dead letter.
async fn handle(
    job: Incoming,
    attempt: Attempt,
    batcher: Data<Batcher>,
    max: Data<MaxAttempts>,
    requeue: Data<Requeue>,
) -> Result<(), BoxDynError> {
    let job = job.into_job().map_err(|error| {
        tracing::warn!(%error, "malformed job sent to the dead letter");
        AbortError::new(error)
    })?;
    match batcher.refresh(job.group).await {
        Ok(Refreshed::Done(_) | Refreshed::Failed(_)) => Ok(()),
        // Shutting down says nothing about the job: back to the queue, whatever its attempt.
        Err(error @ BatchError::Closed) => Err(error.into()),
        Err(error) if attempt.current() >= max.0.0 => {
            tracing::warn!(group = job.group, attempts = attempt.current(), %error, "job sent to the dead letter");
            Err(AbortError::new(format!("{error} (gave up after {} attempts)", attempt.current())).into())
        }
        Err(error) => {
            let tried = u32::try_from(attempt.current()).unwrap_or(u32::MAX);
            let wait = crate::batcher::backoff(REQUEUE_FIRST, tried, REQUEUE_MAX);
            tokio::select! {
                () = requeue.shutdown.wait() => {}
                () = tokio::time::sleep(wait) => {}
            }
            Err(error.into())
        }
    }
}

/// Runs one worker process until `shutdown`, then drains: in-flight jobs finish (bounded by
/// `shutdown_timeout`), buffered ones go back to the queue.
pub async fn run(settings: &Settings, source: Source, cache: Cache, shutdown: Shutdown) -> anyhow::Result<()> {
    let ws = &settings.worker;
    let queue = Queue::new(cache.redis(), cache.keys(), ws);
    let retry = RetryPolicy { attempts: ws.retry_attempts, backoff: ws.retry_backoff };
    let quarantine = QuarantinePolicy { after: ws.quarantine_after, retry: ws.quarantine_retry };
    let (batcher, batcher_task) = Batcher::spawn(
        Refresher::new(source, cache).with_retry(retry),
        BatcherOptions { batch_size: ws.batch_size, batch_wait: ws.batch_wait, quarantine },
        Some(queue.clone()),
    );
    let max_attempts = MaxAttempts(ws.max_attempts.max(1) as usize);

    let name = worker_name("worker");
    tracing::info!(worker = %name, concurrency = ws.concurrency, batch_size = ws.batch_size, "worker started");
    let summary = tokio::spawn(log_summaries(batcher.clone(), shutdown.clone()));
    let janitor = tokio::spawn(vacuum_finished_jobs(queue.clone(), shutdown.clone()));

    let (concurrency, poll_every) = (ws.concurrency.max(1), ws.poll_interval);
    let worker_batcher = batcher.clone();
    let worker_requeue = Requeue { shutdown: shutdown.clone() };
    let (worker_queue, worker_name_base, recovery_queue) = (queue.clone(), name.clone(), queue.clone());
    let starts = Arc::new(AtomicUsize::new(0));
    let worker_starts = starts.clone();
    let monitor = Monitor::new()
        .register(move |restarts| {
            worker_starts.fetch_max(restarts + 1, Ordering::Relaxed);
            // A restarted worker registers under a new name: the old one may still be inside the
            // orphan window, and its jobs are re-enqueued by the survivors.
            WorkerBuilder::new(format!("{worker_name_base}-{restarts}"))
                .backend(worker_queue.consumer_storage().poll_with_strategy(TickPoll::new(poll_every)))
                .concurrency(concurrency)
                .data(worker_batcher.clone())
                .data(max_attempts)
                .data(worker_requeue.clone())
                .build(handle)
        })
        .should_restart(move |ctx, error| {
            tracing::warn!(worker = ctx.name(), %error, "worker stopped on a backend error; restarting");
            // The stopped worker's fetched jobs would wait out the orphan window; one of them may
            // be the undecodable payload that stopped it, and would stop the next worker too.
            tokio::spawn(recover(recovery_queue.clone(), ctx.name().to_owned()));
            true
        });
    let stop = {
        let shutdown = shutdown.clone();
        async move { shutdown.wait().await }
    };
    let result = ranq_queue::run_monitor(monitor, stop, settings.shutdown_timeout).await;
    drop(batcher);
    let names: Vec<String> = (0..starts.load(Ordering::Relaxed)).map(|i| format!("{name}-{i}")).collect();
    if let Err(error) = queue.forget_workers(&names).await {
        tracing::warn!(%error, "could not remove this worker's registration metadata");
    }
    // The batcher finishes the batch in flight, then ends once the last handle is dropped.
    let _ = tokio::time::timeout(settings.shutdown_timeout, batcher_task).await;
    summary.abort();
    janitor.abort();
    result.map_err(|e| anyhow::anyhow!("worker failed: {e}"))?;
    tracing::info!("worker stopped");
    Ok(())
}

/// Takes back the jobs of a worker that stopped on an error (see `Queue::recover_stopped_worker`).
async fn recover(queue: Queue, worker: String) {
    match queue.recover_stopped_worker(&worker).await {
        Ok(r) if r.requeued + r.dead > 0 => {
            tracing::warn!(
                worker,
                requeued = r.requeued,
                dead = r.dead,
                "took back the stopped worker's jobs; undecodable ones are dead"
            )
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(worker, %error, "could not take back the stopped worker's jobs; the orphan sweep will")
        }
    }
}

/// Removes finished jobs every few seconds. Every worker does it; `SPOP` makes that safe.
async fn vacuum_finished_jobs(queue: Queue, shutdown: Shutdown) {
    const PER_CALL: usize = 1_000;
    const MAX_CALLS: usize = 100;
    let mut every = tokio::time::interval(VACUUM_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.wait() => return,
        }
        for _ in 0..MAX_CALLS {
            match queue.vacuum_done(PER_CALL).await {
                Ok(n) if n == PER_CALL => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "vacuuming finished jobs failed; will retry");
                    break;
                }
            }
        }
    }
}

async fn log_summaries(batcher: Batcher, shutdown: Shutdown) {
    let mut every = tokio::time::interval(SUMMARY_EVERY);
    every.tick().await;
    let mut last = TotalsNow::default();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.wait() => return,
        }
        let now = batcher.totals().now();
        let d = now.since(&last);
        if d != TotalsNow::default() {
            tracing::info!(
                written = d.written,
                fenced = d.fenced,
                deleted = d.deleted,
                failed = d.failed,
                batches = d.batches,
                "refreshed in the last {}s",
                SUMMARY_EVERY.as_secs()
            );
        }
        last = now;
    }
}
