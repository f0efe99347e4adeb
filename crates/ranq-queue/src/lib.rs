//! `ranq-queue` wraps apalis-redis for the one job type ranq has, [`ranq_core::RefreshJob`], and
//! works around the pitfalls of apalis-redis 1.0 in one place:
//!
//! * every push lands in the scheduled set and ~8,000 jobs falling due at once break the fetch
//!   script, so [`Queue::enqueue`] pushes in chunks and waits (bounded, see [`Backpressure`]) for
//!   the backlog to drain;
//! * an idle worker stops polling unless something wakes it, so [`TickPoll`] wakes it on a timer;
//! * worker names must be unique per process start for orphan recovery, see [`worker_name`].
//!
//! Architecture Invariant: the queue's keys all live under `<ns>:{queue}`; nothing outside this
//! crate reads or writes them.

mod dead;
mod poll;
mod queue;

pub use dead::{DEAD_PAGE, DeadJob, DeadPage, Recovered, RetryReport};
pub use poll::TickPoll;
pub use queue::{Backpressure, EnqueueReport, Queue, QueueError, QueueStats, worker_name};

/// Runs an apalis monitor until `stop` resolves, then lets its workers drain for at most `grace`.
pub async fn run_monitor(
    monitor: apalis::prelude::Monitor,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    grace: std::time::Duration,
) -> Result<(), apalis::prelude::MonitorError> {
    monitor
        .with_terminator(tokio::time::sleep(grace))
        .run_with_signal(async move {
            stop.await;
            Ok(())
        })
        .await
}
