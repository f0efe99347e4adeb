//! `ranq-bench noop-worker` (hidden): a worker that acks every job without doing anything — the
//! ceiling that one job per group can reach through ranq's queue configuration, measured beside
//! every refresh (judge a refresh as a share of it). It consumes exactly as `ranq worker` does:
//! the same storage, fetch size, concurrency and poll interval.

use std::process::ExitCode;

use apalis::prelude::*;
use ranq_core::{Incoming, Keys};
use ranq_queue::{Queue, TickPoll, worker_name};
use ranq_redis::Redis;
use ranq_runtime::Shutdown;

use crate::sandbox::Lab;

async fn ack(_job: Incoming) -> Result<(), BoxDynError> {
    Ok(())
}

pub async fn noop_worker(lab: &Lab) -> anyhow::Result<ExitCode> {
    let settings = &lab.settings;
    let redis = Redis::connect_with(&settings.redis_url, &settings.redis).await?;
    let queue = Queue::new(&redis, &Keys::new(settings.namespace.clone()), &settings.worker);
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let name = worker_name("noop");
    let (concurrency, poll_every) = (settings.worker.concurrency.max(1), settings.worker.poll_interval);
    let monitor = Monitor::new().register(move |restarts| {
        WorkerBuilder::new(format!("{name}-{restarts}"))
            .backend(queue.consumer_storage().poll_with_strategy(TickPoll::new(poll_every)))
            .concurrency(concurrency)
            .build(ack)
    });
    ranq_queue::run_monitor(monitor, async move { shutdown.wait().await }, settings.shutdown_timeout)
        .await
        .map_err(|e| anyhow::anyhow!("no-op worker failed: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
