//! `ranq producer`: apalis-cron drives the ticks; each tick runs [`Producer::tick`].

use std::str::FromStr;
use std::sync::Arc;

use apalis::prelude::*;
use apalis_cron::{CronScheduler, Tick};
use chrono::{DateTime, Utc};
use ranq_cache::Cache;
use ranq_db::Source;
use ranq_queue::{Queue, QueueOptions, worker_name};
use ranq_runtime::{Settings, Shutdown};

use crate::tick::Producer;

/// Parses a cron expression with a seconds field, e.g. `0 * * * * *` (every minute).
pub fn parse_schedule(expr: &str) -> Result<cron::Schedule, String> {
    cron::Schedule::from_str(expr).map_err(|e| {
        format!("producer.schedule {expr:?} is not a cron expression with a seconds field ({e}); e.g. \"0 * * * * *\" runs every minute")
    })
}

async fn on_tick(tick: Tick, producer: Data<Arc<Producer>>) -> Result<(), BoxDynError> {
    let scheduled = i64::try_from(tick.get_timestamp())
        .ok()
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .unwrap_or_else(Utc::now);
    if let Err(error) = producer.tick(scheduled).await {
        tracing::error!(%error, "tick failed; the next tick will try again");
        return Err(error.into());
    }
    Ok(())
}

/// Runs the producer until `shutdown`. A tick in progress is finished (bounded by
/// `shutdown_timeout`).
pub async fn run(settings: &Settings, source: Source, cache: Cache, shutdown: Shutdown) -> anyhow::Result<()> {
    let schedule = parse_schedule(&settings.producer.schedule).map_err(anyhow::Error::msg)?;
    let queue = Queue::new(cache.connection(), cache.keys(), &QueueOptions::default());
    let name = worker_name("producer");
    let producer = Arc::new(Producer::new(source, cache, queue, settings.producer.clone(), name.clone()));
    tracing::info!(producer = %name, schedule = %settings.producer.schedule, mode = ?settings.producer.mode, "producer started");

    let monitor = Monitor::new().register(move |restarts| {
        WorkerBuilder::new(format!("{name}-{restarts}"))
            .backend(CronScheduler::new(schedule.clone()))
            // One tick at a time: a slow tick delays the next rather than overlapping it.
            .concurrency(1)
            .data(producer.clone())
            .build(on_tick)
    });
    let stop = async move { shutdown.wait().await };
    ranq_queue::run_monitor(monitor, stop, settings.shutdown_timeout)
        .await
        .map_err(|e| anyhow::anyhow!("producer failed: {e}"))?;
    tracing::info!("producer stopped");
    Ok(())
}
