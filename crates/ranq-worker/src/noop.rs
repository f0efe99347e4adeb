//! A worker that acks every job without doing anything: the ceiling that one job per group can
//! reach through this queue configuration, measured beside every refresh benchmark (FACTS: judge
//! a refresh as a share of it). Only `ranq bench` runs it.

use apalis::prelude::*;
use ranq_core::Incoming;
use ranq_queue::{Queue, TickPoll, worker_name};
use ranq_runtime::{Settings, Shutdown};

async fn ack(_job: Incoming) -> Result<(), BoxDynError> {
    Ok(())
}

/// Consumes jobs from `queue`'s namespace with the real worker's fetch size, concurrency and poll
/// interval, until `shutdown`. `stock_leases` turns apalis-redis's per-job leases back on, to
/// measure what ranq saves by leaving them off.
pub async fn run_noop(
    settings: &Settings,
    conn: redis::aio::ConnectionManager,
    keys: &ranq_core::Keys,
    stock_leases: bool,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let ws = &settings.worker;
    let queue = Queue::new(conn, keys, &crate::run::queue_options(ws));
    let queue = if stock_leases { queue.with_stock_leases() } else { queue };
    let name = worker_name("noop");
    let (concurrency, poll_every) = (ws.concurrency.max(1), ws.poll_interval);
    let monitor = Monitor::new().register(move |restarts| {
        WorkerBuilder::new(format!("{name}-{restarts}"))
            .backend(queue.consumer_storage().poll_with_strategy(TickPoll::new(poll_every)))
            .concurrency(concurrency)
            .build(ack)
    });
    ranq_queue::run_monitor(monitor, async move { shutdown.wait().await }, settings.shutdown_timeout)
        .await
        .map_err(|e| anyhow::anyhow!("no-op worker failed: {e}"))
}
