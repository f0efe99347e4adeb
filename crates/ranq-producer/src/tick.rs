//! One tick: check leadership, claim the tick fleet-wide (fenced by the lease token), choose the
//! groups, enqueue them with backpressure while still leader, record the tick.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use ranq_cache::Cache;
use ranq_core::job::Reason;
use ranq_core::{GroupId, RefreshJob};
use ranq_db::Source;
use ranq_queue::Queue;
use ranq_runtime::ProducerMode;
use ranq_runtime::settings::ProducerSettings;

use crate::lease::{Leadership, Lease, LeaseState};
use ranq_core::{LastTick, TickCounters, Token};

/// How long a tick claim is kept; far longer than any schedule's period.
const TICK_CLAIM_TTL: Duration = Duration::from_secs(24 * 3600);
/// Most quarantined groups retried by one tick (the rest wait for the next).
const QUARANTINE_RETRIES_PER_TICK: usize = 1_000;
/// Most schedule slots counted when working out how many ticks nobody enqueued.
const MISSED_SCAN_LIMIT: usize = 100_000;

static CLAIM_TICK: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("claim_tick.lua")));
static CLAIM_DIRTY: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("claim_dirty.lua")));

/// What one tick did on this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    /// This instance leads, claimed the tick and enqueued `pushed` jobs (`deferred` held back by
    /// backpressure, or left because the lease was lost mid-tick).
    Enqueued { pushed: usize, deferred: usize },
    /// Another instance had already claimed this tick.
    Duplicate,
    /// This instance does not lead; it stands by.
    Standby,
}

/// The id of the tick scheduled at `at`: its time in RFC 3339, the same on every instance.
pub fn tick_id(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Everything a tick needs.
#[derive(Debug)]
pub struct Producer {
    source: Source,
    cache: Cache,
    queue: Queue,
    settings: ProducerSettings,
    schedule: cron::Schedule,
    lease: Lease,
    leadership: Mutex<Leadership>,
    ticks_led: AtomicU64,
    sweep_requested: AtomicBool,
}

impl Producer {
    pub fn new(
        source: Source,
        cache: Cache,
        queue: Queue,
        settings: ProducerSettings,
        lease: Lease,
    ) -> anyhow::Result<Self> {
        let schedule = crate::parse_schedule(&settings.schedule).map_err(anyhow::Error::msg)?;
        Ok(Self {
            source,
            cache,
            queue,
            settings,
            schedule,
            lease,
            leadership: Mutex::default(),
            ticks_led: AtomicU64::new(0),
            sweep_requested: AtomicBool::new(false),
        })
    }

    /// The fencing token, while this instance leads.
    pub fn token(&self) -> Option<Token> {
        self.leadership.lock().ok().and_then(|l| l.current(Instant::now()))
    }

    /// Makes the next tick a full sweep (e.g. after the change feed lost its connection).
    pub fn request_sweep(&self) {
        self.sweep_requested.store(true, Ordering::Relaxed);
    }

    /// Marks `groups` dirty (from the change feed).
    pub async fn mark_dirty(&self, groups: &[GroupId]) -> anyhow::Result<()> {
        if !groups.is_empty() {
            self.cache.mark_dirty(groups).await?;
        }
        Ok(())
    }

    /// One round of lease keeping: acquire or renew, and on becoming leader, account for the ticks
    /// nobody enqueued. Called every third of the lease's lifetime.
    pub async fn keep_lease(&self) -> anyhow::Result<LeaseState> {
        let asked = Instant::now();
        let state = self.lease.acquire_or_renew().await?;
        if let Ok(mut leadership) = self.leadership.lock() {
            match state {
                LeaseState::Acquired(token) | LeaseState::Renewed(token) => {
                    leadership.confirm(token, asked, self.lease.ttl())
                }
                LeaseState::Standby => leadership.clear(),
            }
        }
        if let LeaseState::Acquired(token) = state {
            let missed = self.count_missed_ticks().await?;
            tracing::info!(producer = self.lease.holder(), token, missed, "became the leader");
        }
        Ok(state)
    }

    /// Gives up the lease (on shutdown), so a standby takes over at once.
    pub async fn release(&self) -> anyhow::Result<()> {
        if let Ok(mut leadership) = self.leadership.lock() {
            leadership.clear();
        }
        if self.lease.release().await? {
            tracing::info!("released the leader lease");
        }
        Ok(())
    }

    /// Counts the schedule slots between the last enqueued tick and now as missed: no leader
    /// enqueued them.
    async fn count_missed_ticks(&self) -> anyhow::Result<u64> {
        let keys = self.cache.keys();
        let mut conn = self.cache.connection();
        let Some(last) = ranq_status::read_last_tick(&mut conn, keys).await? else { return Ok(0) };
        let Ok(last) = DateTime::parse_from_rfc3339(&last.id) else { return Ok(0) };
        let horizon = Utc::now() - chrono::Duration::milliseconds(500);
        let missed =
            self.schedule.after(&last.with_timezone(&Utc)).take(MISSED_SCAN_LIMIT).take_while(|t| *t < horizon).count()
                as u64;
        if missed > 0 {
            metrics::counter!("ranq_ticks_total", "outcome" => "missed").increment(missed);
            redis::cmd("HINCRBY")
                .arg(keys.ticks())
                .arg(TickCounters::MISSED)
                .arg(missed)
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(missed)
    }

    /// Runs the tick scheduled at `scheduled`: once across the fleet, by the leader only.
    pub async fn tick(&self, scheduled: DateTime<Utc>) -> anyhow::Result<TickOutcome> {
        let Some(token) = self.token() else { return Ok(TickOutcome::Standby) };
        let id = tick_id(scheduled);
        let keys = self.cache.keys();
        let mut conn = self.cache.connection();
        let claimed: i64 = CLAIM_TICK
            .key(keys.leader())
            .key(keys.tick_claim(&id))
            .key(keys.ticks())
            .arg(token)
            .arg(self.lease.holder())
            .arg(TICK_CLAIM_TTL.as_secs())
            .invoke_async(&mut conn)
            .await?;
        match claimed {
            1 => {}
            0 => {
                metrics::counter!("ranq_ticks_total", "outcome" => "duplicate").increment(1);
                tracing::debug!(tick = %id, "tick already claimed");
                return Ok(TickOutcome::Duplicate);
            }
            _ => {
                tracing::warn!(tick = %id, token, "lost the leader lease before the tick; standing by");
                if let Ok(mut leadership) = self.leadership.lock() {
                    leadership.clear();
                }
                return Ok(TickOutcome::Standby);
            }
        }

        let (groups, reason) = self.groups_for_tick().await?;
        let jobs: Vec<RefreshJob> = groups.iter().map(|&g| RefreshJob::new(g, reason)).collect();
        let s = &self.settings;
        let report = self
            .queue
            .enqueue_while(&jobs, s.enqueue_chunk, s.max_backlog, s.backlog_wait, || self.still_leads(token))
            .await?;
        if report.deferred > 0 {
            tracing::warn!(tick = %id, deferred = report.deferred, "not every group was enqueued (backlog did not drain, or the lease was lost); the next tick takes them");
        } else if reason == Reason::Dirty {
            redis::cmd("DEL").arg(keys.dirty_claimed()).query_async::<()>(&mut conn).await?;
        }

        let last = LastTick {
            id: id.clone(),
            at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            groups: report.pushed as u64,
            deferred: report.deferred as u64,
        };
        redis::pipe()
            .cmd("HINCRBY")
            .arg(keys.ticks())
            .arg(TickCounters::ENQUEUED)
            .arg(1)
            .ignore()
            .cmd("SET")
            .arg(keys.last_tick())
            .arg(serde_json::to_string(&last)?)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        metrics::counter!("ranq_ticks_total", "outcome" => "enqueued").increment(1);
        metrics::counter!("ranq_jobs_enqueued_total").increment(report.pushed as u64);
        tracing::info!(tick = %id, groups = report.pushed, ?reason, "tick enqueued");
        Ok(TickOutcome::Enqueued { pushed: report.pushed, deferred: report.deferred })
    }

    /// Whether the lease in Redis still carries `token`: checked before every enqueued chunk.
    async fn still_leads(&self, token: Token) -> bool {
        let mut conn = self.cache.connection();
        let lease: Option<String> =
            redis::cmd("GET").arg(self.cache.keys().leader()).query_async(&mut conn).await.unwrap_or(None);
        lease.and_then(|l| ranq_core::fleet::parse_lease(&l)).map(|(held, _, _)| held) == Some(token)
    }

    /// The groups this tick refreshes: all of them, or the dirty ones between full sweeps. A full
    /// sweep also runs whenever the cache is empty (first start, or Redis lost its data).
    async fn groups_for_tick(&self) -> anyhow::Result<(Vec<GroupId>, Reason)> {
        let led = self.ticks_led.fetch_add(1, Ordering::Relaxed);
        let sweep = match self.settings.mode {
            ProducerMode::All => true,
            ProducerMode::Dirty => {
                let every = u64::from(self.settings.sweep_every);
                let requested = self.sweep_requested.swap(false, Ordering::Relaxed);
                requested || (every > 0 && led % every == 0) || self.cache_is_empty().await?
            }
        };
        let (groups, reason) =
            if sweep { (self.sweep_groups().await?, Reason::Tick) } else { (self.claim_dirty().await?, Reason::Dirty) };
        Ok((self.apply_quarantine(groups).await?, reason))
    }

    /// Leaves out quarantined groups until their retry time, and adds those whose retry is due
    /// (a dirty-mode tick would not list them otherwise). A manual `ranq refresh` is not held
    /// back: it does not go through ticks.
    async fn apply_quarantine(&self, mut groups: Vec<GroupId>) -> anyhow::Result<Vec<GroupId>> {
        let now = Utc::now();
        let later: std::collections::HashSet<GroupId> =
            self.cache.quarantined_until_later(now).await?.into_iter().collect();
        if !later.is_empty() {
            let before = groups.len();
            groups.retain(|g| !later.contains(g));
            tracing::debug!(skipped = before - groups.len(), "quarantined groups left out until their retry time");
        }
        let due = self.cache.quarantine_due(now, QUARANTINE_RETRIES_PER_TICK).await?;
        if !due.is_empty() {
            let listed: std::collections::HashSet<GroupId> = groups.iter().copied().collect();
            groups.extend(due.into_iter().filter(|g| !listed.contains(g)));
        }
        Ok(groups)
    }

    async fn cache_is_empty(&self) -> anyhow::Result<bool> {
        let mut conn = self.cache.connection();
        let cached: u64 = redis::cmd("ZCARD").arg(self.cache.keys().index()).query_async(&mut conn).await?;
        Ok(cached == 0)
    }

    /// Every group in the source, plus every cached group that is no longer in the source: the
    /// refresh finds it absent and deletes its snapshot.
    async fn sweep_groups(&self) -> anyhow::Result<Vec<GroupId>> {
        let mut groups = self.source.group_ids().await?;
        let cached = self.cache.cached_groups().await?;
        let gone: Vec<GroupId> = cached.into_iter().filter(|g| groups.binary_search(g).is_err()).collect();
        if !gone.is_empty() {
            tracing::info!(
                groups = gone.len(),
                "cached groups no longer in the source; refreshing them to delete their snapshots"
            );
            groups.extend(gone);
        }
        Ok(groups)
    }

    /// Takes the dirty set (see `claim_dirty.lua`); marks that are not group ids are dropped with
    /// a warning.
    async fn claim_dirty(&self) -> anyhow::Result<Vec<GroupId>> {
        let keys = self.cache.keys();
        let mut conn = self.cache.connection();
        let raw: Vec<String> = CLAIM_DIRTY.key(keys.dirty()).key(keys.dirty_claimed()).invoke_async(&mut conn).await?;
        let mut groups = Vec::with_capacity(raw.len());
        for member in raw {
            match ranq_core::parse_group_id(&member) {
                Ok(g) => groups.push(g),
                Err(e) => tracing::warn!(%e, "ignoring a dirty mark that is not a group id"),
            }
        }
        Ok(groups)
    }
}
