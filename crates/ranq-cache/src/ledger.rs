//! The producer's ledger: the leader lease and its fencing tokens, the claim of each scheduled
//! tick, the tick counters and the last tick. The producer writes it through here; `ranq status`
//! and `/v1/status` read it through here. Its keys share the `{producer}` hash tag, so the
//! scripts that touch several of them run on Redis Cluster too. The value formats are
//! `ranq_core::ledger`'s.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ranq_core::{Keys, LastTick, LeaderInfo, LeaseState, LeaseValue, TickClaim, TickCounters, Token};
use ranq_redis::Redis;

use crate::CacheError;

static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("lua/lease_acquire.lua")));
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("lua/lease_release.lua")));
static CLAIM_TICK: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("lua/claim_tick.lua")));

/// How long a tick claim is kept; far longer than any schedule's period.
const TICK_CLAIM_TTL: Duration = Duration::from_secs(24 * 3600);

/// The producer's ledger in one namespace. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    redis: Redis,
    keys: Keys,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("namespace", &self.keys.namespace()).finish()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Ledger {
    pub(crate) fn new(redis: Redis, keys: Keys) -> Self {
        Self { redis, keys }
    }

    /// Takes the lease for `holder` if it is free, renews it if `holder` has it; either way it
    /// then lasts `ttl`.
    pub async fn acquire_or_renew(&self, holder: &str, ttl: Duration) -> Result<LeaseState, CacheError> {
        let (token, fresh): (Token, u8) = ACQUIRE
            .key(self.keys.leader())
            .key(self.keys.leader_token())
            .arg(holder)
            .arg(millis(ttl))
            .arg(Utc::now().timestamp_millis())
            .invoke_async(&mut self.redis.conn())
            .await?;
        Ok(match (token, fresh) {
            (0, _) => LeaseState::Standby,
            (token, 1) => LeaseState::Acquired(token),
            (token, _) => LeaseState::Renewed(token),
        })
    }

    /// Gives the lease up if `holder` has it; whether it did.
    pub async fn release(&self, holder: &str) -> Result<bool, CacheError> {
        Ok(RELEASE.key(self.keys.leader()).arg(holder).invoke_async(&mut self.redis.conn()).await?)
    }

    /// The token the lease carries now, if anyone holds it.
    pub async fn lease_token(&self) -> Result<Option<Token>, CacheError> {
        let lease: Option<String> =
            redis::cmd("GET").arg(self.keys.leader()).query_async(&mut self.redis.conn()).await?;
        Ok(lease.and_then(|l| LeaseValue::parse(&l)).map(|l| l.token))
    }

    /// The current leader, if any producer holds the lease.
    pub async fn leader(&self) -> Result<Option<LeaderInfo>, CacheError> {
        let key = self.keys.leader();
        let (value, pttl): (Option<String>, i64) =
            redis::pipe().cmd("GET").arg(&key).cmd("PTTL").arg(&key).query_async(&mut self.redis.conn()).await?;
        Ok(value.and_then(|v| LeaseValue::parse(&v)).map(|lease| LeaderInfo {
            id: lease.holder,
            since: DateTime::from_timestamp_millis(lease.since_ms).unwrap_or_default(),
            lease_expires_in_ms: u64::try_from(pttl).unwrap_or(0),
            token: lease.token,
        }))
    }

    /// Claims the tick `tick_id` for the leader with `token`, in one script that also checks the
    /// lease still carries the token: a deposed leader's claim fails. A second claim of the same
    /// tick counts as a duplicate.
    pub async fn claim_tick(&self, token: Token, holder: &str, tick_id: &str) -> Result<TickClaim, CacheError> {
        let claimed: i64 = CLAIM_TICK
            .key(self.keys.leader())
            .key(self.keys.tick_claim(tick_id))
            .key(self.keys.ticks())
            .arg(token)
            .arg(holder)
            .arg(TICK_CLAIM_TTL.as_secs())
            .invoke_async(&mut self.redis.conn())
            .await?;
        Ok(match claimed {
            1 => TickClaim::Claimed,
            0 => TickClaim::Duplicate,
            _ => TickClaim::NotLeader,
        })
    }

    /// Records an enqueued tick: one more on the counter, and the last tick.
    pub async fn record_tick(&self, tick: &LastTick) -> Result<(), CacheError> {
        let json = serde_json::to_string(tick).unwrap_or_default();
        redis::pipe()
            .cmd("HINCRBY")
            .arg(self.keys.ticks())
            .arg(TickCounters::ENQUEUED)
            .arg(1)
            .ignore()
            .cmd("SET")
            .arg(self.keys.last_tick())
            .arg(json)
            .ignore()
            .query_async::<()>(&mut self.redis.conn())
            .await?;
        Ok(())
    }

    /// Counts `ticks` more that nobody enqueued.
    pub async fn add_missed(&self, ticks: u64) -> Result<(), CacheError> {
        redis::cmd("HINCRBY")
            .arg(self.keys.ticks())
            .arg(TickCounters::MISSED)
            .arg(ticks)
            .query_async::<()>(&mut self.redis.conn())
            .await?;
        Ok(())
    }

    /// The most recent enqueued tick; `None` before the first (or if the value is unreadable).
    pub async fn last_tick(&self) -> Result<Option<LastTick>, CacheError> {
        let raw: Option<String> =
            redis::cmd("GET").arg(self.keys.last_tick()).query_async(&mut self.redis.conn()).await?;
        Ok(raw.and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// The tick counters; zero before the first tick.
    pub async fn counters(&self) -> Result<TickCounters, CacheError> {
        let (enqueued, duplicates_skipped, missed): (Option<u64>, Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg(self.keys.ticks())
            .arg(TickCounters::ENQUEUED)
            .arg(TickCounters::DUPLICATES)
            .arg(TickCounters::MISSED)
            .query_async(&mut self.redis.conn())
            .await?;
        Ok(TickCounters {
            enqueued: enqueued.unwrap_or(0),
            duplicates_skipped: duplicates_skipped.unwrap_or(0),
            missed: missed.unwrap_or(0),
        })
    }
}
