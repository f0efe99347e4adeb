//! The producer's audit trail in Redis: tick counters and the last enqueued tick (CONTRACT §6).

use ranq_core::Keys;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// The most recent tick that was enqueued, as `ranq status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastTick {
    /// The tick's scheduled time (RFC 3339), which is also its fleet-wide id.
    pub id: String,
    /// When it was enqueued.
    pub at: String,
    /// Jobs pushed and jobs deferred to the next tick by backpressure.
    pub groups: u64,
    pub deferred: u64,
}

/// Tick counters since the namespace was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickCounters {
    pub enqueued: u64,
    pub duplicates_skipped: u64,
    pub missed: u64,
}

pub(crate) const ENQUEUED: &str = "enqueued";
pub(crate) const DUPLICATES: &str = "duplicates_skipped";
pub(crate) const MISSED: &str = "missed";

pub async fn read_last_tick(conn: &mut ConnectionManager, keys: &Keys) -> redis::RedisResult<Option<LastTick>> {
    let raw: Option<String> = redis::cmd("GET").arg(keys.last_tick()).query_async(conn).await?;
    Ok(raw.and_then(|json| serde_json::from_str(&json).ok()))
}

pub async fn read_tick_counters(conn: &mut ConnectionManager, keys: &Keys) -> redis::RedisResult<TickCounters> {
    let (enqueued, duplicates_skipped, missed): (Option<u64>, Option<u64>, Option<u64>) =
        redis::cmd("HMGET").arg(keys.ticks()).arg(ENQUEUED).arg(DUPLICATES).arg(MISSED).query_async(conn).await?;
    Ok(TickCounters {
        enqueued: enqueued.unwrap_or(0),
        duplicates_skipped: duplicates_skipped.unwrap_or(0),
        missed: missed.unwrap_or(0),
    })
}
