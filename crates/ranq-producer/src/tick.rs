//! One tick: claim it fleet-wide, choose the groups, enqueue them with backpressure, record it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use ranq_cache::Cache;
use ranq_core::job::Reason;
use ranq_core::{GroupId, RefreshJob};
use ranq_db::Source;
use ranq_queue::Queue;
use ranq_runtime::ProducerMode;
use ranq_runtime::settings::ProducerSettings;

use crate::audit::{DUPLICATES, ENQUEUED, LastTick};

/// How long a tick claim is kept; far longer than any schedule's period.
const TICK_CLAIM_TTL: Duration = Duration::from_secs(24 * 3600);

/// What one tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    /// This instance claimed the tick and enqueued `pushed` jobs (`deferred` held back).
    Enqueued { pushed: usize, deferred: usize },
    /// Another instance had already claimed this tick.
    Duplicate,
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
    instance: String,
    ticks_seen: AtomicU64,
}

impl Producer {
    pub fn new(source: Source, cache: Cache, queue: Queue, settings: ProducerSettings, instance: String) -> Self {
        Self { source, cache, queue, settings, instance, ticks_seen: AtomicU64::new(0) }
    }

    /// Runs the tick scheduled at `scheduled`, once across the fleet.
    pub async fn tick(&self, scheduled: DateTime<Utc>) -> anyhow::Result<TickOutcome> {
        let id = tick_id(scheduled);
        let keys = self.cache.keys();
        let mut conn = self.cache.connection();
        let claimed: bool = redis::cmd("SET")
            .arg(keys.tick_claim(&id))
            .arg(&self.instance)
            .arg("NX")
            .arg("EX")
            .arg(TICK_CLAIM_TTL.as_secs())
            .query_async::<Option<String>>(&mut conn)
            .await?
            .is_some();
        if !claimed {
            redis::cmd("HINCRBY").arg(keys.ticks()).arg(DUPLICATES).arg(1).query_async::<()>(&mut conn).await?;
            tracing::debug!(tick = %id, "tick already claimed by another producer");
            return Ok(TickOutcome::Duplicate);
        }

        let (groups, reason) = self.groups_for_tick().await?;
        let jobs: Vec<RefreshJob> = groups.iter().map(|&g| RefreshJob::new(g, reason)).collect();
        let s = &self.settings;
        let report = self.queue.enqueue(&jobs, s.enqueue_chunk, s.max_backlog, s.backlog_wait).await?;
        if report.deferred > 0 {
            tracing::warn!(tick = %id, deferred = report.deferred, "queue backlog did not drain in time; the rest waits for the next tick");
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
            .arg(ENQUEUED)
            .arg(1)
            .ignore()
            .cmd("SET")
            .arg(keys.last_tick())
            .arg(serde_json::to_string(&last)?)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        tracing::info!(tick = %id, groups = report.pushed, "tick enqueued");
        Ok(TickOutcome::Enqueued { pushed: report.pushed, deferred: report.deferred })
    }

    /// The groups this tick refreshes: all of them, or the dirty ones between full sweeps.
    async fn groups_for_tick(&self) -> anyhow::Result<(Vec<GroupId>, Reason)> {
        let seen = self.ticks_seen.fetch_add(1, Ordering::Relaxed);
        let sweep = match self.settings.mode {
            ProducerMode::All => true,
            ProducerMode::Dirty => {
                let every = u64::from(self.settings.sweep_every);
                every > 0 && seen % every == 0
            }
        };
        if sweep {
            Ok((self.sweep_groups().await?, Reason::Tick))
        } else {
            Ok((self.claim_dirty().await?, Reason::Dirty))
        }
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

    /// Takes the dirty set atomically: it is renamed away before it is read, so a mark added
    /// meanwhile lands in a fresh set and is taken next tick.
    async fn claim_dirty(&self) -> anyhow::Result<Vec<GroupId>> {
        let keys = self.cache.keys();
        let claimed = format!("{}:claimed", keys.dirty());
        let mut conn = self.cache.connection();
        let moved: Result<(), redis::RedisError> =
            redis::cmd("RENAME").arg(keys.dirty()).arg(&claimed).query_async(&mut conn).await;
        if let Err(e) = moved {
            // "no such key": nothing is dirty.
            if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) {
                return Ok(Vec::new());
            }
            return Err(e.into());
        }
        let raw: Vec<String> = redis::cmd("SMEMBERS").arg(&claimed).query_async(&mut conn).await?;
        let mut groups = Vec::with_capacity(raw.len());
        for member in raw {
            match ranq_core::parse_group_id(&member) {
                Ok(g) => groups.push(g),
                Err(e) => tracing::warn!(%e, "ignoring a dirty mark that is not a group id"),
            }
        }
        redis::cmd("DEL").arg(&claimed).query_async::<()>(&mut conn).await?;
        Ok(groups)
    }
}
