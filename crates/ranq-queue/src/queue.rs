//! The refresh queue: typed storage, bounded enqueueing and stats read from apalis-redis's keys.

use std::sync::LazyLock;
use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_redis::{Config, RedisStorage};
use ranq_core::{GroupId, Incoming, Keys, RefreshJob};
use ranq_redis::{Redis, RedisConn};
use ranq_runtime::settings::{ProducerSettings, WorkerSettings};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("queue push failed: {0}")]
    Push(String),
}

/// How long a group's pending flag lives at most (normally it is cleared when its job starts).
const PENDING_FLAG_TTL: Duration = Duration::from_secs(300);

/// The idempotency key of a group's refresh job. apalis-redis refuses a push whose key is
/// already taken, so this is what makes at most one refresh per group pending.
fn pending_key(group: GroupId) -> String {
    format!("g{group}")
}

/// How a push makes room for itself: in chunks, each waiting while the backlog is full, for a
/// bounded time in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backpressure {
    /// Jobs pushed per round trip.
    pub chunk: usize,
    /// Most jobs allowed to wait in the queue before a push holds back (apalis-redis 1.0 fails
    /// when about 8,000 jobs fall due at once).
    pub max_backlog: usize,
    /// How long one push may wait for room, in all, before it defers the rest.
    pub wait: Duration,
}

impl Backpressure {
    /// The producer's settings, which every pusher shares: one backlog bound for the fleet.
    pub fn of(settings: &ProducerSettings) -> Self {
        Self { chunk: settings.enqueue_chunk, max_backlog: settings.max_backlog, wait: settings.backlog_wait }
    }

    /// The same bound, waiting at most `wait`.
    pub fn waiting(self, wait: Duration) -> Self {
        Self { wait, ..self }
    }
}

/// What one bounded enqueue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnqueueReport {
    /// Jobs handed to the queue. A job for a group that already has one pending is coalesced
    /// into it by the queue, so this may exceed the jobs actually added.
    pub pushed: usize,
    /// Jobs not pushed because the backlog did not drain in time (they are for the next tick).
    pub deferred: usize,
}

/// Queue depth as `ranq status` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Waiting to run: due, scheduled (including retries) and fetched-but-unclaimed.
    pub pending: u64,
    /// Claimed by a live worker.
    pub running: u64,
    /// Gave up after all attempts.
    pub dead: u64,
    /// Done, and not yet vacuumed away.
    pub finished: u64,
    /// Workers whose heartbeat is within the orphan window.
    pub workers_alive: u64,
}

/// The refresh queue of one namespace.
#[derive(Clone)]
pub struct Queue {
    storage: RedisStorage<RefreshJob, RedisConn>,
    pub(crate) redis: Redis,
    pub(crate) config: Config,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("queue", &self.config.queue.as_ref()).finish()
    }
}

impl Queue {
    /// The queue of `keys`' namespace on `redis`. The worker settings decide how many jobs a
    /// fetch takes (one batch) and how soon a silent worker's jobs run elsewhere, which is also
    /// who counts as alive in [`Queue::stats`].
    pub fn new(redis: &Redis, keys: &Keys, worker: &WorkerSettings) -> Self {
        let config = Config::default()
            .queue(keys.queue())
            .batch_size(worker.batch_size.max(1))
            .heartbeat_interval(worker.heartbeat)
            .missed_heartbeats(worker.missed_heartbeats.max(1))
            // apalis acks a job only when it persists its result; the results themselves are tiny
            // (`null`) and `vacuum_done` removes them with the job.
            .persist_results(true)
            // Nobody listens to per-job pub/sub events; publishing them costs Redis CPU per job.
            .emit_events(false)
            // A lease marks a fetched job `Running` with `locked_by`; nothing in ranq reads those,
            // and taking it `LREM`s the job from the active list it already left, scanning the
            // whole backlog once per job: 50 µs of Redis time each with 10k queued, half of
            // Redis's work in a full refresh. A killed worker's jobs come back through its
            // in-flight set either way (`reenqueue_orphaned`, `recover_stopped_worker`).
            .lock_tasks(false)
            // The pending flag of a group (see `coalescing`) expires by itself after this long,
            // should its job ever vanish without running.
            .idempotency_ttl(Some(PENDING_FLAG_TTL))
            // In the queue's slot and namespace, not apalis's global `core:apalis:queues:list`.
            .registry(keys.queue_registry());
        let storage = RedisStorage::new(redis.conn()).with_config(config.clone());
        Self { storage, redis: redis.clone(), config }
    }

    pub(crate) fn conn(&self) -> ranq_redis::RedisConn {
        self.redis.conn()
    }

    /// The storage to hand an apalis worker: the same queue, read as [`Incoming`], so that a
    /// payload that is valid JSON but not a refresh job reaches the handler (and the dead letter)
    /// instead of stopping the worker.
    pub fn consumer_storage(&self) -> RedisStorage<Incoming, RedisConn> {
        RedisStorage::new(self.redis.conn()).with_config(self.config.clone())
    }

    /// Pushes `jobs` as `pressure` allows: in chunks, each waiting while the backlog is full, up
    /// to `pressure.wait` in all. What could not be pushed in time is reported as deferred, never
    /// silently dropped.
    pub async fn enqueue(&self, jobs: &[RefreshJob], pressure: &Backpressure) -> Result<EnqueueReport, QueueError> {
        self.enqueue_while(jobs, pressure, || std::future::ready(true)).await
    }

    /// [`Queue::enqueue`], asking `allowed` before every chunk; when it says no, the rest is
    /// reported as deferred. The producer uses it to stop the moment it loses its lease.
    pub async fn enqueue_while<F, Fut>(
        &self,
        jobs: &[RefreshJob],
        pressure: &Backpressure,
        mut allowed: F,
    ) -> Result<EnqueueReport, QueueError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + pressure.wait;
        let mut report = EnqueueReport::default();
        let mut storage = self.storage.clone();
        for part in jobs.chunks(pressure.chunk.max(1)) {
            if !self.wait_for_room(part.len(), pressure.max_backlog, deadline).await? || !allowed().await {
                report.deferred = jobs.len() - report.pushed;
                break;
            }
            let tasks: Vec<_> =
                part.iter().map(|job| TaskBuilder::new(*job).idempotency_key(pending_key(job.group)).build()).collect();
            storage.push_all(futures::stream::iter(tasks)).await.map_err(|e| QueueError::Push(e.to_string()))?;
            report.pushed += part.len();
        }
        Ok(report)
    }

    /// Waits until `incoming` more jobs fit under `max_backlog`; `false` if the deadline passed.
    async fn wait_for_room(
        &self,
        incoming: usize,
        max_backlog: usize,
        deadline: tokio::time::Instant,
    ) -> Result<bool, QueueError> {
        let mut pause = Duration::from_millis(20);
        loop {
            let waiting = self.waiting().await?;
            if waiting == 0 || waiting as usize + incoming <= max_backlog {
                return Ok(true);
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Jobs waiting in the scheduled set and the due list.
    async fn waiting(&self) -> Result<u64, QueueError> {
        let mut conn = self.conn();
        let (scheduled, active): (u64, u64) = redis::pipe()
            .cmd("ZCARD")
            .arg(self.config.scheduled_jobs_set())
            .cmd("LLEN")
            .arg(self.config.active_jobs_list())
            .query_async(&mut conn)
            .await?;
        Ok(scheduled + active)
    }

    /// Depth and liveness, read straight from apalis-redis's keys.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut conn = self.conn();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let alive_since = now.saturating_sub(self.config.orphaned_duration().as_secs());
        let workers: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.config.workers_set())
            .arg(alive_since)
            .arg("+inf")
            .arg("BYSCORE")
            .query_async(&mut conn)
            .await?;
        let mut pipe = redis::pipe();
        pipe.cmd("ZCARD").arg(self.config.scheduled_jobs_set());
        pipe.cmd("LLEN").arg(self.config.active_jobs_list());
        // apalis-redis adds dead jobs with SADD (its own stats script reads them with ZCARD).
        pipe.cmd("SCARD").arg(self.config.dead_jobs_set());
        pipe.cmd("SCARD").arg(self.config.done_jobs_set());
        for worker in &workers {
            pipe.cmd("SCARD").arg(format!("{}:{worker}", self.config.inflight_jobs_set()));
        }
        let counts: Vec<u64> = pipe.query_async(&mut conn).await?;
        let pending = counts.first().copied().unwrap_or(0) + counts.get(1).copied().unwrap_or(0);
        let dead = counts.get(2).copied().unwrap_or(0);
        let finished = counts.get(3).copied().unwrap_or(0);
        let running = counts.iter().skip(4).sum();
        Ok(QueueStats { pending, running, dead, finished, workers_alive: workers.len() as u64 })
    }
}

impl Queue {
    /// Clears the pending flags of `groups` as their jobs start running, so that a mark arriving
    /// from now on enqueues exactly one more refresh after this one (coalescing: at most one
    /// pending and one running refresh per group).
    pub async fn clear_pending(&self, groups: &[GroupId]) -> Result<(), QueueError> {
        if groups.is_empty() {
            return Ok(());
        }
        let prefix = self.config.idempotency_key_set();
        let keys: Vec<String> = groups.iter().map(|&g| format!("{prefix}:{}", pending_key(g))).collect();
        redis::cmd("DEL").arg(keys).query_async::<()>(&mut self.conn()).await?;
        Ok(())
    }
}

impl Queue {
    /// Deletes the registration metadata apalis-redis keeps per worker name (it never removes
    /// it), so that worker restarts do not accumulate keys. Called by a worker as it stops.
    pub async fn forget_workers(&self, names: &[String]) -> Result<(), QueueError> {
        if names.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> =
            names.iter().map(|n| format!("{}:workers:metadata:{n}", self.config.queue.as_ref())).collect();
        redis::cmd("DEL").arg(keys).query_async::<()>(&mut self.conn()).await?;
        Ok(())
    }
}

static VACUUM_DONE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("lua/vacuum_done.lua")));

impl Queue {
    /// Deletes up to `limit` finished jobs (payload, metadata, done mark); returns how many.
    /// apalis-redis keeps finished jobs forever, so workers call this periodically.
    pub async fn vacuum_done(&self, limit: usize) -> Result<usize, QueueError> {
        let mut conn = self.conn();
        Ok(VACUUM_DONE
            .key(self.config.done_jobs_set())
            .key(self.config.job_data_hash())
            .arg(limit.max(1))
            .arg(self.config.job_meta_hash())
            .invoke_async(&mut conn)
            .await?)
    }
}

/// A worker name unique to this process start (`host-pid-start`), so a restarted worker never
/// inherits, or is blocked by, the registration of the process it replaces.
pub fn worker_name(role: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .unwrap_or_else(|| "host".into());
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    format!("{role}-{host}-{}-{started}", std::process::id())
}
