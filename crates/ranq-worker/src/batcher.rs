//! The in-process micro-batcher: many concurrent job handlers in, one SQL query and one Redis
//! pipeline per batch out.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ranq_cache::{Cache, GroupFailure, Outcome, QuarantinePolicy, Write};
use ranq_core::metrics::{REFRESH_BATCH_SIZE, REFRESH_SECONDS, REFRESHES_TOTAL};
use ranq_core::{GroupId, Snapshot};
use ranq_db::{DbError, Source, TopBatch};
use ranq_queue::Queue;
use tokio::sync::{mpsc, oneshot};

/// Why a whole batch failed; every job in it goes back to the queue.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    #[error("{0}")]
    Failed(String),
    #[error("the worker is shutting down")]
    Closed,
}

/// What a refresh did for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// Read and handed to the fence, which wrote, deleted or dropped it.
    Done(Outcome),
    /// This group's own rows or SQL failed (the rest of its batch did not); counted towards its
    /// quarantine. Retrying at once would fail the same way, so the job is acked.
    Failed(String),
}

#[derive(Debug, Clone, Copy)]
pub struct BatcherOptions {
    pub batch_size: usize,
    pub batch_wait: Duration,
    pub quarantine: QuarantinePolicy,
}

/// In-process retries of a batch that failed on a transient error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Wait before the second try; doubled for each further one (capped at [`MAX_BACKOFF`]).
    pub backoff: Duration,
}

/// Longest single wait between two tries of a batch.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl RetryPolicy {
    /// No retries: the first failure is final.
    pub const NONE: Self = Self { attempts: 1, backoff: Duration::ZERO };

    /// The wait after failed try number `tried` (1-based): exponential, with "equal jitter" (half
    /// fixed, half random) so that workers failing together do not retry in lockstep.
    pub fn delay(&self, tried: u32) -> Duration {
        backoff(self.backoff, tried, MAX_BACKOFF)
    }
}

/// `first × 2^(tried − 1)`, capped at `max`, with "equal jitter": half fixed, half random.
pub fn backoff(first: Duration, tried: u32, max: Duration) -> Duration {
    let full = first.saturating_mul(2u32.saturating_pow(tried.saturating_sub(1))).min(max);
    let half = full / 2;
    half + half.mul_f64(jitter())
}

/// A number in [0, 1) that differs between calls and processes (std's per-instance random hash
/// keys), which is all jitter needs.
fn jitter() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Reads the truth of a batch from the source and writes it through the fence. Kept separate from
/// the batching so a manual refresh (`ranq refresh --all` without workers, tests) can reuse it.
#[derive(Debug, Clone)]
pub struct Refresher {
    source: Source,
    cache: Cache,
    retry: RetryPolicy,
}

impl Refresher {
    pub fn new(source: Source, cache: Cache) -> Self {
        Self { source, cache, retry: RetryPolicy::NONE }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Refreshes `groups` (duplicates allowed) and returns what happened to each distinct group.
    ///
    /// Transient errors (connection lost, deadlock, Redis timeout) are retried with backoff; if
    /// they persist the whole batch fails, as it does at once on an error in the statement or the
    /// schema (an unknown column), which no group causes on its own. Any other database error is
    /// narrowed down by splitting the batch in halves until the groups that cause it stand alone:
    /// they fail, every other group is refreshed. One bad group costs about 2·log2(batch) extra
    /// queries, once per try.
    pub async fn refresh(&self, groups: &[GroupId]) -> Result<HashMap<GroupId, Refreshed>, BatchError> {
        let mut ids = groups.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut results = HashMap::with_capacity(ids.len());
        let mut writes = Vec::with_capacity(ids.len());
        for batch in self.read_isolating(ids, &mut results).await? {
            writes.extend(batch.groups.into_iter().map(|top| match top.entries {
                Some(entries) => Write::Snapshot(Snapshot::new(top.group, batch.version, entries)),
                None => Write::Absent { group: top.group, version: batch.version },
            }));
        }
        let outcomes = self
            .retrying("writing snapshots", |_| true, || self.cache.write_batch(&writes))
            .await
            .map_err(|e| BatchError::Failed(e.to_string()))?;
        for (write, outcome) in writes.iter().zip(outcomes) {
            results.insert(write.group(), Refreshed::Done(outcome));
        }
        Ok(results)
    }

    /// Reads `ids`, splitting around groups whose rows make the query fail; those are recorded
    /// in `failed` and left out of the returned batches.
    async fn read_isolating(
        &self,
        ids: Vec<GroupId>,
        failed: &mut HashMap<GroupId, Refreshed>,
    ) -> Result<Vec<TopBatch>, BatchError> {
        let mut read = Vec::new();
        // Bounded: every split halves a part, so at most 2·len − 1 parts are ever tried.
        let mut parts = vec![ids];
        while let Some(part) = parts.pop() {
            if part.is_empty() {
                continue;
            }
            match self.retrying("reading the source", DbError::is_transient, || self.source.top_n(&part)).await {
                Ok(batch) => read.push(batch),
                Err(e) if e.is_transient() || !e.may_be_group_specific() => {
                    return Err(BatchError::Failed(e.to_string()));
                }
                Err(e) if part.len() == 1 => {
                    failed.insert(part[0], Refreshed::Failed(e.to_string()));
                }
                Err(_) => {
                    let (left, right) = part.split_at(part.len() / 2);
                    parts.push(right.to_vec());
                    parts.push(left.to_vec());
                }
            }
        }
        Ok(read)
    }

    /// Runs `op` until it succeeds, fails for good, or has been tried `retry.attempts` times.
    async fn retrying<T, E, F, Fut>(&self, what: &str, transient: impl Fn(&E) -> bool, mut op: F) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut tried = 0;
        loop {
            tried += 1;
            match op().await {
                Err(e) if transient(&e) && tried < self.retry.attempts.max(1) => {
                    let wait = self.retry.delay(tried);
                    tracing::warn!(error = %e, tried, wait_ms = wait.as_millis() as u64, "{what} failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                result => return result,
            }
        }
    }
}

struct Request {
    group: GroupId,
    reply: oneshot::Sender<Result<Refreshed, BatchError>>,
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

/// [`Totals`] read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TotalsNow {
    pub written: u64,
    pub fenced: u64,
    pub deleted: u64,
    pub failed: u64,
    pub batches: u64,
}

impl Totals {
    pub fn now(&self) -> TotalsNow {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TotalsNow {
            written: read(&self.written),
            fenced: read(&self.fenced),
            deleted: read(&self.deleted),
            failed: read(&self.failed),
            batches: read(&self.batches),
        }
    }
}

impl TotalsNow {
    /// What happened between `earlier` and this reading.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            written: self.written.saturating_sub(earlier.written),
            fenced: self.fenced.saturating_sub(earlier.fenced),
            deleted: self.deleted.saturating_sub(earlier.deleted),
            failed: self.failed.saturating_sub(earlier.failed),
            batches: self.batches.saturating_sub(earlier.batches),
        }
    }
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
        let flusher = Flusher { refresher, queue, quarantine: options.quarantine, totals: totals.clone() };
        let task = tokio::spawn(run_batches(rx, flusher, size, options.batch_wait));
        (Self { tx, totals }, task)
    }

    /// Refreshes one group as part of the next batch and waits for its outcome.
    pub async fn refresh(&self, group: GroupId) -> Result<Refreshed, BatchError> {
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
    quarantine: QuarantinePolicy,
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
        metrics::histogram!(REFRESH_BATCH_SIZE).record(groups.len() as f64);
        metrics::histogram!(REFRESH_SECONDS).record(started.elapsed().as_secs_f64());
        match &result {
            Ok(results) => {
                let mut failures = Vec::new();
                for (group, refreshed) in results {
                    let (counter, label) = match refreshed {
                        Refreshed::Done(Outcome::Written) => (&totals.written, "written"),
                        Refreshed::Done(Outcome::Fenced) => (&totals.fenced, "fenced"),
                        Refreshed::Done(Outcome::Deleted) => (&totals.deleted, "deleted"),
                        Refreshed::Failed(error) => {
                            failures.push(GroupFailure { group: *group, error: error.clone() });
                            (&totals.failed, "failed")
                        }
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(REFRESHES_TOTAL, "outcome" => label).increment(1);
                }
                self.record(&failures).await;
                tracing::debug!(
                    groups = groups.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "batch refreshed"
                );
            }
            Err(error) => {
                totals.failed.fetch_add(groups.len() as u64, Ordering::Relaxed);
                metrics::counter!(REFRESHES_TOTAL, "outcome" => "failed").increment(groups.len() as u64);
                tracing::warn!(groups = groups.len(), %error, "batch failed; its jobs go back to the queue");
            }
        }
        answer(batch, &result);
    }
}

impl Flusher {
    /// Counts the failures of groups that failed on their own, towards their quarantine.
    async fn record(&self, failures: &[GroupFailure]) {
        if failures.is_empty() {
            return;
        }
        for failure in failures {
            tracing::warn!(group = failure.group, error = %failure.error, "refresh of this group failed");
        }
        match self.refresher.cache.record_failures(failures, self.quarantine, chrono::Utc::now()).await {
            Ok(recorded) => {
                for group in recorded.quarantined {
                    tracing::error!(
                        group,
                        after = self.quarantine.after,
                        retry_in_s = self.quarantine.retry.as_secs(),
                        "group quarantined: its refresh keeps failing; its last snapshot is served, flagged"
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "could not record refresh failures"),
        }
    }
}

/// Tells every waiting handler its group's outcome.
fn answer(batch: &mut Vec<Request>, result: &Result<HashMap<GroupId, Refreshed>, BatchError>) {
    for request in batch.drain(..) {
        let answer = match result {
            Ok(outcomes) => outcomes
                .get(&request.group)
                .cloned()
                .ok_or_else(|| BatchError::Failed("group missing from batch".into())),
            Err(e) => Err(e.clone()),
        };
        // A handler that gave up waiting has dropped its receiver; nothing to tell it.
        let _ = request.reply.send(answer);
    }
}
