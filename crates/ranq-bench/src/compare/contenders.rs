//! The two architectures ranq did not choose, built just well enough to be measured fairly:
//! batched SQL and pipelined Redis where a careful engineer would use them, nothing ranq-specific
//! (no queue, no version fence). They live in the bench, never in the production path.
//!
//! * [`ShardedLock`] — architecture 1: every server, every period, walks all groups and races
//!   for a per-group lock (`SET NX PX`); the winner refreshes the group.
//! * [`OnDemand`] — architecture 3: nothing is pre-computed; a read that finds nothing takes a
//!   per-group lock and computes from the database while other readers wait; optionally
//!   stale-while-revalidate (serve STALE, refresh behind it) with a hard `max_age`.
//!
//! Both count what the comparison reports: database queries, lock attempts and conflicts, and
//! how many computations and readers pile up on one group at once. Each keeps its data under a
//! prefix of its own, with keys of its own making; only ranq's run ([`RanqReader`]) reads ranq's
//! snapshots, through `ranq-cache`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use ranq_cache::Cache;
use ranq_core::{GroupId, Snapshot};
use ranq_db::Source;
use ranq_redis::Redis;
use ranq_runtime::Shutdown;

use super::workload::{Read, Reader, Served};

/// Groups per lock pipeline and per SQL query in architecture 1 (ranq's worker batch size).
const BATCH: usize = 128;
/// How long a reader of architecture 3 waits for another reader's computation.
const WAIT_FOR_PEER: Duration = Duration::from_secs(2);
/// How often a waiting reader looks again.
const PEER_POLL: Duration = Duration::from_millis(5);
/// Lifetime of architecture 3's computation lock (far longer than one query).
const COMPUTE_LOCK: Duration = Duration::from_secs(5);

/// What an architecture did, counted as it happened.
#[derive(Debug, Default)]
pub struct Counters {
    pub db_queries: AtomicU64,
    pub lock_attempts: AtomicU64,
    pub lock_conflicts: AtomicU64,
    /// Groups written by architecture 1 (to know when its first round is complete).
    pub groups_written: AtomicU64,
    /// Most computations of one group running at once.
    pub max_concurrent_db: AtomicU64,
    /// Most readers waiting on one group's computation at once (the stampede a lock absorbs).
    pub max_piled_readers: AtomicU64,
}

/// The counters that make a window's rates, read at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counted {
    pub db_queries: u64,
    pub lock_attempts: u64,
    pub lock_conflicts: u64,
}

impl Counters {
    pub fn now(&self) -> Counted {
        Counted {
            db_queries: self.db_queries.load(Ordering::Relaxed),
            lock_attempts: self.lock_attempts.load(Ordering::Relaxed),
            lock_conflicts: self.lock_conflicts.load(Ordering::Relaxed),
        }
    }
}

impl Counted {
    /// What was counted between `earlier` and this reading.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            db_queries: self.db_queries.saturating_sub(earlier.db_queries),
            lock_attempts: self.lock_attempts.saturating_sub(earlier.lock_attempts),
            lock_conflicts: self.lock_conflicts.saturating_sub(earlier.lock_conflicts),
        }
    }
}

/// Per-group gauges whose maximum is kept (concurrent computations, waiting readers).
#[derive(Debug, Default)]
struct PerGroup(Mutex<HashMap<GroupId, u64>>);

impl PerGroup {
    fn enter(&self, group: GroupId, max: &AtomicU64) {
        if let Ok(mut map) = self.0.lock() {
            let n = map.entry(group).or_default();
            *n += 1;
            max.fetch_max(*n, Ordering::Relaxed);
        }
    }

    fn leave(&self, group: GroupId) {
        if let Ok(mut map) = self.0.lock() {
            if let Some(n) = map.get_mut(&group) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&group);
                }
            }
        }
    }
}

/// A pre-computed snapshot judged by age, as ranq's read API judges: FRESH up to
/// `stale_after`, STALE up to `max_age`, else MISS.
fn judged(snapshot: Option<Snapshot>, stale_after: Duration, max_age: Duration) -> Read {
    let Some(snapshot) = snapshot else { return Read { served: Served::Miss, age: None, cold: true } };
    let age = snapshot.age_at(Utc::now());
    if age <= stale_after {
        Read { served: Served::Fresh, age: Some(age), cold: false }
    } else if age <= max_age {
        Read { served: Served::Stale, age: Some(age), cold: false }
    } else {
        Read { served: Served::Miss, age: None, cold: true }
    }
}

/// Architecture 2's reads: ranq's snapshots, through `ranq-cache`.
pub struct RanqReader {
    pub cache: Cache,
    pub stale_after: Duration,
    pub max_age: Duration,
}

impl Reader for RanqReader {
    async fn read(&self, group: GroupId) -> anyhow::Result<Read> {
        Ok(judged(self.cache.snapshot(group).await?, self.stale_after, self.max_age))
    }
}

/// Architecture 1's reads: the snapshots its servers wrote under its prefix.
pub struct ShardedReader {
    redis: Redis,
    prefix: String,
    stale_after: Duration,
    max_age: Duration,
}

impl Reader for ShardedReader {
    async fn read(&self, group: GroupId) -> anyhow::Result<Read> {
        let raw: Option<String> =
            redis::cmd("GET").arg(snapshot_key(&self.prefix, group)).query_async(&mut self.redis.conn()).await?;
        let snapshot = raw.and_then(|json| serde_json::from_str(&json).ok());
        Ok(judged(snapshot, self.stale_after, self.max_age))
    }
}

/// Where a contender keeps a group's snapshot.
fn snapshot_key(prefix: &str, group: GroupId) -> String {
    format!("{prefix}:top:{{{group}}}")
}

/// Architecture 1: one server of the lock competition.
pub struct ShardedLock {
    pub server: usize,
    pub source: Source,
    pub redis: Redis,
    /// Where its locks and snapshots live.
    pub prefix: String,
    pub groups: Arc<Vec<GroupId>>,
    pub period: Duration,
    pub counters: Arc<Counters>,
}

impl ShardedLock {
    /// The reads of what the servers of `prefix` wrote.
    pub fn reader(redis: Redis, prefix: &str, stale_after: Duration, max_age: Duration) -> ShardedReader {
        ShardedReader { redis, prefix: prefix.to_owned(), stale_after, max_age }
    }

    /// Every `period`, from `epoch` on (all servers share it, as cron on synchronised clocks
    /// does), walks every group in the same order as its peers, until shutdown.
    pub async fn run(self, epoch: Instant, shutdown: Shutdown) -> anyhow::Result<()> {
        for round in 0u64.. {
            let at = epoch + self.period.mul_f64(round as f64);
            tokio::select! {
                () = shutdown.wait() => return Ok(()),
                () = tokio::time::sleep_until(at.into()) => {}
            }
            self.walk(round).await?;
        }
        Ok(())
    }

    async fn walk(&self, round: u64) -> anyhow::Result<()> {
        let mut conn = self.redis.conn();
        let ttl = u64::try_from(self.period.as_millis()).unwrap_or(u64::MAX);
        for chunk in self.groups.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for group in chunk {
                // One lock per group and round; it expires with the round.
                pipe.cmd("SET")
                    .arg(format!("{}:lock:{{{group}}}:{round}", self.prefix))
                    .arg(self.server)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl);
            }
            let taken: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
            let won: Vec<GroupId> = chunk.iter().zip(&taken).filter(|(_, t)| t.is_some()).map(|(g, _)| *g).collect();
            self.counters.lock_attempts.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            self.counters.lock_conflicts.fetch_add((chunk.len() - won.len()) as u64, Ordering::Relaxed);
            if won.is_empty() {
                continue;
            }
            let batch = self.source.top_n(&won).await?;
            self.counters.db_queries.fetch_add(1, Ordering::Relaxed);
            let mut pipe = redis::pipe();
            for top in batch.groups {
                let snapshot = Snapshot::new(top.group, batch.version, top.entries.unwrap_or_default());
                pipe.cmd("SET").arg(snapshot_key(&self.prefix, top.group)).arg(snapshot.to_json()).ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
            self.counters.groups_written.fetch_add(won.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Architecture 3: compute on read, under a per-group lock. Clones share everything (a stale
/// read hands a clone to its background refresh).
#[derive(Clone)]
pub struct OnDemand {
    pub source: Source,
    pub redis: Redis,
    /// Where its entries and locks live.
    pub prefix: String,
    /// How long a computed entry counts as fresh.
    pub ttl: Duration,
    /// Stale-while-revalidate: past `ttl`, serve the entry as STALE and refresh it behind the
    /// answer; past `max_age` it is gone and the read computes.
    pub swr: bool,
    pub max_age: Duration,
    pub counters: Arc<Counters>,
    computing: Arc<PerGroup>,
    waiting: Arc<PerGroup>,
    /// Refreshes running behind stale answers.
    background: tokio_util::task::TaskTracker,
}

impl OnDemand {
    pub fn new(
        source: Source,
        redis: Redis,
        prefix: String,
        ttl: Duration,
        swr: bool,
        max_age: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            source,
            redis,
            prefix,
            ttl,
            swr,
            max_age,
            counters,
            computing: Arc::default(),
            waiting: Arc::default(),
            background: tokio_util::task::TaskTracker::new(),
        }
    }

    /// Waits for the refreshes still running behind stale answers.
    pub async fn background_done(&self) {
        self.background.close();
        self.background.wait().await;
    }

    fn key(&self, group: GroupId) -> String {
        snapshot_key(&self.prefix, group)
    }

    fn lock_key(&self, group: GroupId) -> String {
        format!("{}:lock:{{{group}}}", self.prefix)
    }

    async fn cached(&self, group: GroupId) -> anyhow::Result<Option<Snapshot>> {
        let raw: Option<String> = redis::cmd("GET").arg(self.key(group)).query_async(&mut self.redis.conn()).await?;
        Ok(raw.and_then(|json| serde_json::from_str(&json).ok()))
    }

    async fn try_lock(&self, group: GroupId) -> anyhow::Result<bool> {
        self.counters.lock_attempts.fetch_add(1, Ordering::Relaxed);
        let ms = u64::try_from(COMPUTE_LOCK.as_millis()).unwrap_or(u64::MAX);
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.lock_key(group))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .query_async(&mut self.redis.conn())
            .await?;
        if taken.is_none() {
            self.counters.lock_conflicts.fetch_add(1, Ordering::Relaxed);
        }
        Ok(taken.is_some())
    }

    /// Reads the group from the database and caches it; the lock is released whatever happens.
    async fn compute(&self, group: GroupId) -> anyhow::Result<Snapshot> {
        let result = async {
            self.computing.enter(group, &self.counters.max_concurrent_db);
            let read = self.source.top_n(&[group]).await;
            self.computing.leave(group);
            let batch = read?;
            self.counters.db_queries.fetch_add(1, Ordering::Relaxed);
            let entries = batch.groups.into_iter().next().and_then(|top| top.entries).unwrap_or_default();
            let snapshot = Snapshot::new(group, batch.version, entries);
            // Without SWR the entry simply expires at `ttl`; with it, it lives until `max_age`.
            let lifetime = if self.swr { self.max_age } else { self.ttl };
            let ms = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
            redis::pipe()
                .cmd("SET")
                .arg(self.key(group))
                .arg(snapshot.to_json())
                .arg("PX")
                .arg(ms)
                .ignore()
                .cmd("DEL")
                .arg(self.lock_key(group))
                .ignore()
                .query_async::<()>(&mut self.redis.conn())
                .await?;
            anyhow::Ok(snapshot)
        }
        .await;
        if result.is_err() {
            let _ = redis::cmd("DEL").arg(self.lock_key(group)).query_async::<()>(&mut self.redis.conn()).await;
        }
        result
    }

    /// Another reader holds the lock: wait for its result, boundedly.
    async fn wait_for_peer(&self, group: GroupId) -> anyhow::Result<Option<Snapshot>> {
        self.waiting.enter(group, &self.counters.max_piled_readers);
        let deadline = Instant::now() + WAIT_FOR_PEER;
        let found = async {
            while Instant::now() < deadline {
                tokio::time::sleep(PEER_POLL).await;
                if let Some(snapshot) = self.cached(group).await? {
                    return anyhow::Ok(Some(snapshot));
                }
            }
            Ok(None)
        }
        .await;
        self.waiting.leave(group);
        found
    }
}

impl Reader for OnDemand {
    async fn read(&self, group: GroupId) -> anyhow::Result<Read> {
        if let Some(snapshot) = self.cached(group).await? {
            let age = snapshot.age_at(Utc::now());
            if !self.swr || age <= self.ttl {
                return Ok(Read { served: Served::Fresh, age: Some(age), cold: false });
            }
            // Stale: answer now; one reader (whoever takes the lock) refreshes behind it.
            if self.try_lock(group).await? {
                let this = self.clone();
                self.background.spawn(async move {
                    let _ = this.compute(group).await;
                });
            }
            return Ok(Read { served: Served::Stale, age: Some(age), cold: false });
        }
        // Nothing cached: compute it, or wait for the reader who is. A reader that takes the lock
        // looks again first: the holder before it may have just written the value and let go.
        let snapshot = if self.try_lock(group).await? {
            match self.cached(group).await? {
                Some(s) => {
                    redis::cmd("DEL").arg(self.lock_key(group)).query_async::<()>(&mut self.redis.conn()).await?;
                    Some(s)
                }
                None => Some(self.compute(group).await?),
            }
        } else {
            self.wait_for_peer(group).await?
        };
        Ok(match snapshot {
            Some(s) => Read { served: Served::Fresh, age: Some(s.age_at(Utc::now())), cold: true },
            None => Read { served: Served::Miss, age: None, cold: true },
        })
    }
}
