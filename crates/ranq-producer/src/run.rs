//! `ranq producer`: a lease keeper decides whether this instance leads; apalis-cron drives the
//! ticks; each tick runs [`Producer::tick`], which does nothing on a standby.

use std::str::FromStr;
use std::sync::Arc;

use apalis::prelude::*;
use apalis_cron::{CronScheduler, Tick};
use chrono::{DateTime, Utc};
use ranq_cache::Cache;
use ranq_core::LeaseState;
use ranq_db::{ChangeSource, Source};
use ranq_queue::{Queue, worker_name};
use ranq_runtime::{ProducerMode, Settings, Shutdown};

use crate::tick::{Producer, TickOutcome};

/// Parses a cron expression with a seconds field, e.g. `0 * * * * *` (every minute).
pub fn parse_schedule(expr: &str) -> Result<cron::Schedule, String> {
    cron::Schedule::from_str(expr).map_err(|e| {
        // The parser's message draws a caret under the expression on lines of its own; its last
        // line says what is wrong.
        let text = e.to_string();
        let why = text.lines().last().unwrap_or_default().trim();
        format!("producer.schedule {expr:?} is not a cron expression with a seconds field ({why}); e.g. \"0 * * * * *\" runs every minute")
    })
}

async fn on_tick(tick: Tick, producer: Data<Arc<Producer>>) -> Result<(), BoxDynError> {
    let scheduled = i64::try_from(tick.get_timestamp())
        .ok()
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .unwrap_or_else(Utc::now);
    match producer.tick(scheduled).await {
        Ok(TickOutcome::Standby) => tracing::debug!("standing by"),
        Ok(_) => {}
        Err(error) => {
            tracing::error!(%error, "tick failed; the next tick will try again");
            return Err(error.into());
        }
    }
    Ok(())
}

/// Keeps (or waits for) the lease until shutdown, then releases it. The leader renews every third
/// of the lease's lifetime; a standby tries every tenth, so it takes over soon after a dead
/// leader's lease expires.
async fn keep_lease(producer: Arc<Producer>, ttl: std::time::Duration, shutdown: Shutdown) {
    loop {
        let every = match producer.keep_lease().await {
            Ok(LeaseState::Acquired(_) | LeaseState::Renewed(_)) => ttl / 3,
            Ok(LeaseState::Standby) => ttl / 10,
            Err(error) => {
                tracing::warn!(%error, "cannot reach Redis to keep the leader lease; will retry");
                ttl / 10
            }
        };
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.wait() => break,
        }
    }
    if let Err(error) = producer.release().await {
        tracing::warn!(%error, "could not release the leader lease; it expires by itself");
    }
}

/// Most changed groups turned into dirty marks per Redis call.
const FEED_BATCH: usize = 1_000;

/// Turns the database's change feed into dirty marks until shutdown. A lost connection (changes
/// not announced meanwhile) makes the next tick a full sweep.
async fn follow_change_feed(producer: Arc<Producer>, source: Source, shutdown: Shutdown) {
    use ranq_db::FeedEvent;
    let mut backoff = std::time::Duration::from_millis(500);
    'connect: loop {
        let mut feed = tokio::select! {
            feed = source.listen_for_changes() => match feed {
                Ok(feed) => feed,
                Err(error) => {
                    tracing::warn!(%error, "change feed unavailable; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.wait() => return,
                    }
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
                    continue 'connect;
                }
            },
            () = shutdown.wait() => return,
        };
        backoff = std::time::Duration::from_millis(500);
        loop {
            let event = tokio::select! {
                event = feed.next(FEED_BATCH) => event,
                () = shutdown.wait() => return,
            };
            match event {
                Ok(FeedEvent::Changed(groups)) => {
                    if let Err(error) = producer.mark_dirty(&groups).await {
                        tracing::warn!(%error, "could not mark changed groups dirty; the next sweep covers them");
                        producer.request_sweep();
                    }
                }
                Ok(FeedEvent::Gap) => {
                    tracing::warn!("change feed reconnected; changes in between are covered by a full sweep");
                    producer.request_sweep();
                }
                Err(error) => {
                    tracing::warn!(%error, "change feed failed; reconnecting");
                    producer.request_sweep();
                    continue 'connect;
                }
            }
        }
    }
}

/// Whether the cron worker should start again after `error`. A tick that outlasts the period (a
/// Redis failover under way, a slow listing) leaves the scheduler's next tick in the past, and
/// apalis-cron ends its worker over it; the restarted worker schedules from now, so the ticks
/// the slow one overlapped are skipped, as they would be had it not ended (one tick at a time),
/// and the next covers them. Nothing else is worth a restart.
fn restart_after_a_late_tick(_: &WorkerContext, error: &WorkerError) -> bool {
    let late = matches!(error, WorkerError::BackendError(e) if e.downcast_ref::<apalis_cron::Error>().is_some());
    if late {
        tracing::warn!(%error, "a tick outlasted the schedule's period; the ticks it overlapped are skipped");
    }
    late
}

/// Runs the producer until `shutdown`. A tick in progress is finished (bounded by
/// `shutdown_timeout`), then the lease is released so a standby takes over at once.
pub async fn run(settings: &Settings, source: Source, cache: Cache, shutdown: Shutdown) -> anyhow::Result<()> {
    let schedule = parse_schedule(&settings.producer.schedule).map_err(anyhow::Error::msg)?;
    let queue = Queue::new(cache.redis(), cache.keys(), &settings.worker);
    let name = worker_name("producer");
    let ttl = settings.producer.lease_ttl;
    let change_source = match settings.producer.mode {
        ProducerMode::Dirty => Some(source.change_source().await?),
        ProducerMode::All => None,
    };
    if change_source == Some(ChangeSource::NotInstalled) {
        tracing::info!(
            "no outbox in the database: only `ranq dirty` and SADD mark groups dirty (`ranq migrate --with-triggers` installs it)"
        );
    }
    let feed_source = (change_source == Some(ChangeSource::Notify)).then(|| source.clone());
    let producer = Producer::new(source, cache, queue, settings.producer.clone(), name.clone())?
        .draining_outbox(change_source == Some(ChangeSource::Outbox));
    let producer = Arc::new(producer);
    tracing::info!(producer = %name, schedule = %settings.producer.schedule, mode = ?settings.producer.mode, "producer started");

    // Stop ticking first, release the lease last: a standby must not take over mid-tick.
    let ticks_stop = Shutdown::new();
    let keeper = tokio::spawn(keep_lease(producer.clone(), ttl, ticks_stop.clone()));
    let feed = feed_source.map(|source| tokio::spawn(follow_change_feed(producer.clone(), source, ticks_stop.clone())));
    let monitor = Monitor::new().should_restart(restart_after_a_late_tick).register(move |restarts| {
        WorkerBuilder::new(format!("{name}-{restarts}"))
            .backend(CronScheduler::new(schedule.clone()))
            // One tick at a time: a slow tick delays the next rather than overlapping it.
            .concurrency(1)
            .data(producer.clone())
            .build(on_tick)
    });
    let stop = async move { shutdown.wait().await };
    let result = ranq_queue::run_monitor(monitor, stop, settings.shutdown_timeout).await;
    ticks_stop.trigger();
    let _ = keeper.await;
    if let Some(feed) = feed {
        let _ = feed.await;
    }
    result.map_err(|e| anyhow::anyhow!("producer failed: {e}"))?;
    tracing::info!("producer stopped");
    Ok(())
}
