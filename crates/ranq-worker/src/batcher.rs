//! The in-process micro-batcher: many concurrent job handlers in, one SQL query and one Redis
//! pipeline per batch out.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ranq_cache::{Cache, Outcome, Write};
use ranq_core::{GroupId, Snapshot};
use ranq_db::Source;
use ranq_queue::Queue;
use tokio::sync::{mpsc, oneshot};

/// Why a batch failed; every job in it is retried by the queue.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    #[error("{0}")]
    Failed(String),
    #[error("the worker is shutting down")]
    Closed,
}

#[derive(Debug, Clone, Copy)]
pub struct BatcherOptions {
    pub batch_size: usize,
    pub batch_wait: Duration,
}

/// Reads the truth of a batch from the source and writes it through the fence. Kept separate from
/// the batching so a manual refresh (`ranq refresh --all` without workers, tests) can reuse it.
#[derive(Debug, Clone)]
pub struct Refresher {
    source: Source,
    cache: Cache,
}

impl Refresher {
    pub fn new(source: Source, cache: Cache) -> Self {
        Self { source, cache }
    }

    /// Refreshes `groups` (duplicates allowed) and returns one outcome per distinct group.
    pub async fn refresh(&self, groups: &[GroupId]) -> Result<HashMap<GroupId, Outcome>, BatchError> {
        let batch = self.source.top_n(groups).await.map_err(|e| BatchError::Failed(e.to_string()))?;
        let writes: Vec<Write> = batch
            .groups
            .into_iter()
            .map(|(group, entries)| match entries {
                Some(entries) => Write::Snapshot(Snapshot::new(group, batch.version, entries)),
                None => Write::Absent { group, version: batch.version },
            })
            .collect();
        let outcomes = self.cache.write_batch(&writes).await.map_err(|e| BatchError::Failed(e.to_string()))?;
        Ok(writes
            .iter()
            .map(|w| match w {
                Write::Snapshot(s) => s.group,
                Write::Absent { group, .. } => *group,
            })
            .zip(outcomes)
            .collect())
    }
}

struct Request {
    group: GroupId,
    reply: oneshot::Sender<Result<Outcome, BatchError>>,
}

/// Running totals, read by the periodic summary log line.
#[derive(Debug, Default)]
pub struct Totals {
    pub written: AtomicU64,
    pub fenced: AtomicU64,
    pub deleted: AtomicU64,
    pub failed: AtomicU64,
    pub batches: AtomicU64,
}

/// Handle given to job handlers. Cheap to clone; the batcher stops when every clone is dropped.
#[derive(Debug, Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Request>,
    totals: Arc<Totals>,
}

impl Batcher {
    /// Starts the batching task. It ends, after flushing, once every [`Batcher`] clone is gone.
    /// With a `queue`, each batch clears its groups' pending flags as it starts (coalescing).
    pub fn spawn(
        refresher: Refresher,
        options: BatcherOptions,
        queue: Option<Queue>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let size = options.batch_size.max(1);
        let (tx, rx) = mpsc::channel(size * 4);
        let totals = Arc::new(Totals::default());
        let flusher = Flusher { refresher, queue, totals: totals.clone() };
        let task = tokio::spawn(run_batches(rx, flusher, size, options.batch_wait));
        (Self { tx, totals }, task)
    }

    /// Refreshes one group as part of the next batch and waits for its outcome.
    pub async fn refresh(&self, group: GroupId) -> Result<Outcome, BatchError> {
        let (reply, outcome) = oneshot::channel();
        self.tx.send(Request { group, reply }).await.map_err(|_| BatchError::Closed)?;
        outcome.await.map_err(|_| BatchError::Closed)?
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }
}

/// What a flush needs.
struct Flusher {
    refresher: Refresher,
    queue: Option<Queue>,
    totals: Arc<Totals>,
}

async fn run_batches(mut rx: mpsc::Receiver<Request>, flusher: Flusher, size: usize, wait: Duration) {
    let mut batch: Vec<Request> = Vec::with_capacity(size);
    // The first request of a batch is awaited without a deadline; the rest for at most `wait`.
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + wait;
        while batch.len() < size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(request)) => batch.push(request),
                Ok(None) | Err(_) => break,
            }
        }
        flusher.flush(&mut batch).await;
    }
}

impl Flusher {
    async fn flush(&self, batch: &mut Vec<Request>) {
        let groups: Vec<GroupId> = batch.iter().map(|r| r.group).collect();
        let totals = &self.totals;
        if let Some(queue) = &self.queue
            && let Err(error) = queue.clear_pending(&groups).await
        {
            // The flags expire by themselves; until then further marks for these groups coalesce.
            tracing::warn!(%error, "could not clear pending flags");
        }
        let started = std::time::Instant::now();
        let result = self.refresher.refresh(&groups).await;
        totals.batches.fetch_add(1, Ordering::Relaxed);
        metrics::histogram!("ranq_refresh_batch_size").record(groups.len() as f64);
        metrics::histogram!("ranq_refresh_seconds").record(started.elapsed().as_secs_f64());
        match &result {
            Ok(outcomes) => {
                for outcome in outcomes.values() {
                    let counter = match outcome {
                        Outcome::Written => &totals.written,
                        Outcome::Fenced => &totals.fenced,
                        Outcome::Deleted => &totals.deleted,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("ranq_refreshes_total", "outcome" => outcome.as_str()).increment(1);
                }
                tracing::debug!(
                    groups = groups.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "batch refreshed"
                );
            }
            Err(error) => {
                totals.failed.fetch_add(groups.len() as u64, Ordering::Relaxed);
                metrics::counter!("ranq_refreshes_total", "outcome" => "failed").increment(groups.len() as u64);
                tracing::warn!(groups = groups.len(), %error, "batch failed; its jobs will be retried");
            }
        }
        answer(batch, &result);
    }
}

/// Tells every waiting handler its group's outcome.
fn answer(batch: &mut Vec<Request>, result: &Result<HashMap<GroupId, Outcome>, BatchError>) {
    for request in batch.drain(..) {
        let answer = match result {
            Ok(outcomes) => outcomes
                .get(&request.group)
                .copied()
                .ok_or_else(|| BatchError::Failed("group missing from batch".into())),
            Err(e) => Err(e.clone()),
        };
        // A handler that gave up waiting has dropped its receiver; nothing to tell it.
        let _ = request.reply.send(answer);
    }
}
