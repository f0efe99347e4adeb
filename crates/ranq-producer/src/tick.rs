//! One tick: check leadership, claim the tick fleet-wide (fenced by the lease token), choose the
//! groups, enqueue them with backpressure while still leader, record the tick.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use ranq_cache::{Cache, Ledger};
use ranq_core::metrics::{JOBS_ENQUEUED_TOTAL, TICKS_TOTAL};
use ranq_core::{GroupId, LastTick, LeaseState, Reason, RefreshJob, TickClaim, Token};
use ranq_db::Source;
use ranq_queue::{Backpressure, Queue};
use ranq_runtime::ProducerMode;
use ranq_runtime::settings::ProducerSettings;

use crate::lease::{Leadership, Lease};

/// Most quarantined groups retried by one tick (the rest wait for the next).
const QUARANTINE_RETRIES_PER_TICK: usize = 1_000;
/// Most schedule slots counted when working out how many ticks nobody enqueued.
const MISSED_SCAN_LIMIT: usize = 100_000;
/// Outbox rows drained per transaction, and most transactions per tick: a backlog larger than a
/// million rows is taken over several ticks.
const OUTBOX_BATCH: usize = 10_000;
const OUTBOX_BATCHES_PER_TICK: usize = 100;

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
    ledger: Ledger,
    queue: Queue,
    settings: ProducerSettings,
    schedule: cron::Schedule,
    lease: Lease,
    leadership: Mutex<Leadership>,
    ticks_led: AtomicU64,
    sweep_requested: AtomicBool,
    drains_outbox: bool,
}

impl Producer {
    /// A producer instance named `holder` (unique per process start: see
    /// `ranq_queue::worker_name`), holding the lease for `settings.lease_ttl` when it leads.
    pub fn new(
        source: Source,
        cache: Cache,
        queue: Queue,
        settings: ProducerSettings,
        holder: impl Into<String>,
    ) -> anyhow::Result<Self> {
        let schedule = crate::parse_schedule(&settings.schedule).map_err(anyhow::Error::msg)?;
        let ledger = cache.ledger();
        let lease = Lease::new(ledger.clone(), holder.into(), settings.lease_ttl);
        Ok(Self {
            source,
            cache,
            ledger,
            queue,
            settings,
            schedule,
            lease,
            leadership: Mutex::default(),
            ticks_led: AtomicU64::new(0),
            sweep_requested: AtomicBool::new(false),
            drains_outbox: false,
        })
    }

    /// Drains the database's outbox into dirty marks at the start of each dirty-mode tick (see
    /// `ranq_db::OutboxBatch`).
    #[must_use]
    pub fn draining_outbox(mut self, drains: bool) -> Self {
        self.drains_outbox = drains;
        self
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
        self.cache.mark_dirty(groups).await?;
        Ok(())
    }

    /// The instance's name in the lease.
    pub fn holder(&self) -> &str {
        self.lease.holder()
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
        let Some(last) = self.ledger.last_tick().await? else { return Ok(0) };
        let Ok(last) = DateTime::parse_from_rfc3339(&last.id) else { return Ok(0) };
        let horizon = Utc::now() - chrono::Duration::milliseconds(500);
        let missed =
            self.schedule.after(&last.with_timezone(&Utc)).take(MISSED_SCAN_LIMIT).take_while(|t| *t < horizon).count()
                as u64;
        if missed > 0 {
            metrics::counter!(TICKS_TOTAL, "outcome" => "missed").increment(missed);
            self.ledger.add_missed(missed).await?;
        }
        Ok(missed)
    }

    /// Runs the tick scheduled at `scheduled`: once across the fleet, by the leader only.
    pub async fn tick(&self, scheduled: DateTime<Utc>) -> anyhow::Result<TickOutcome> {
        let Some(token) = self.token() else { return Ok(TickOutcome::Standby) };
        let id = tick_id(scheduled);
        match self.ledger.claim_tick(token, self.lease.holder(), &id).await? {
            TickClaim::Claimed => {}
            TickClaim::Duplicate => {
                metrics::counter!(TICKS_TOTAL, "outcome" => "duplicate").increment(1);
                tracing::debug!(tick = %id, "tick already claimed");
                return Ok(TickOutcome::Duplicate);
            }
            TickClaim::NotLeader => {
                tracing::warn!(tick = %id, token, "lost the leader lease before the tick; standing by");
                if let Ok(mut leadership) = self.leadership.lock() {
                    leadership.clear();
                }
                return Ok(TickOutcome::Standby);
            }
        }

        let (groups, reason) = self.groups_for_tick().await?;
        let jobs: Vec<RefreshJob> = groups.iter().map(|&g| RefreshJob::new(g, reason)).collect();
        let pressure = Backpressure::of(&self.settings);
        let report = self.queue.enqueue_while(&jobs, &pressure, || self.lease.still_carries(token)).await?;
        if report.deferred > 0 {
            tracing::warn!(tick = %id, deferred = report.deferred, "not every group was enqueued (backlog did not drain, or the lease was lost); the next tick takes them");
        } else if reason == Reason::Dirty {
            self.cache.release_dirty_claim().await?;
        }

        let last = LastTick {
            id: id.clone(),
            at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            groups: report.pushed as u64,
            deferred: report.deferred as u64,
        };
        self.ledger.record_tick(&last).await?;
        metrics::counter!(TICKS_TOTAL, "outcome" => "enqueued").increment(1);
        metrics::counter!(JOBS_ENQUEUED_TOTAL).increment(report.pushed as u64);
        tracing::info!(tick = %id, groups = report.pushed, ?reason, "tick enqueued");
        Ok(TickOutcome::Enqueued { pushed: report.pushed, deferred: report.deferred })
    }

    /// The groups this tick refreshes: all of them, or the dirty ones between full sweeps. A full
    /// sweep also runs whenever the cache is empty (first start, or Redis lost its data).
    async fn groups_for_tick(&self) -> anyhow::Result<(Vec<GroupId>, Reason)> {
        let led = self.ticks_led.fetch_add(1, Ordering::Relaxed);
        let sweep = match self.settings.mode {
            ProducerMode::All => true,
            ProducerMode::Dirty => {
                if self.drains_outbox {
                    self.drain_outbox().await;
                }
                let every = u64::from(self.settings.sweep_every);
                let requested = self.sweep_requested.swap(false, Ordering::Relaxed);
                requested || (every > 0 && led % every == 0) || self.cache.is_empty().await?
            }
        };
        let (groups, reason) = if sweep {
            (self.sweep_groups().await?, Reason::Tick)
        } else {
            (self.cache.claim_dirty().await?, Reason::Dirty)
        };
        Ok((self.apply_quarantine(groups).await?, reason))
    }

    /// Moves the outbox's changed groups into the dirty set, each batch's rows deleted only once
    /// their marks are in Redis. A failure leaves the rest of the outbox for the next tick; this
    /// tick goes on with the marks it has.
    async fn drain_outbox(&self) {
        let (mut rows, mut groups) = (0, 0);
        for _ in 0..OUTBOX_BATCHES_PER_TICK {
            let drained = async {
                let Some(batch) = self.source.take_outbox(OUTBOX_BATCH).await? else { return anyhow::Ok(0) };
                self.cache.mark_dirty(batch.groups()).await?;
                groups += batch.groups().len();
                let read = batch.rows();
                batch.commit().await?;
                anyhow::Ok(read)
            }
            .await;
            match drained {
                Ok(read) => {
                    rows += read;
                    if read < OUTBOX_BATCH {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not drain the outbox; its rows wait for the next tick");
                    break;
                }
            }
        }
        if rows > 0 {
            tracing::debug!(rows, groups, "outbox drained into dirty marks");
        }
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
}
