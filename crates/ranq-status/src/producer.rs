//! Reads of the producer's bookkeeping: the leader lease, the tick counters and the last tick.
//! The producer writes them; their formats live in `ranq_core::fleet`.

use chrono::DateTime;
use ranq_core::fleet::parse_lease;
use ranq_core::{Keys, LastTick, LeaderInfo, TickCounters};
use redis::aio::ConnectionManager;

/// The current leader, if any producer holds the lease.
pub async fn read_leader(conn: &mut ConnectionManager, keys: &Keys) -> redis::RedisResult<Option<LeaderInfo>> {
    let (value, pttl): (Option<String>, i64) =
        redis::pipe().cmd("GET").arg(keys.leader()).cmd("PTTL").arg(keys.leader()).query_async(conn).await?;
    Ok(value.and_then(|v| parse_lease(&v)).map(|(token, id, since_ms)| LeaderInfo {
        id,
        since: DateTime::from_timestamp_millis(since_ms).unwrap_or_default(),
        lease_expires_in_ms: u64::try_from(pttl).unwrap_or(0),
        token,
    }))
}

/// The most recent enqueued tick; `None` before the first (or if the value is unreadable).
pub async fn read_last_tick(conn: &mut ConnectionManager, keys: &Keys) -> redis::RedisResult<Option<LastTick>> {
    let raw: Option<String> = redis::cmd("GET").arg(keys.last_tick()).query_async(conn).await?;
    Ok(raw.and_then(|json| serde_json::from_str(&json).ok()))
}

/// The tick counters; zero before the first tick.
pub async fn read_tick_counters(conn: &mut ConnectionManager, keys: &Keys) -> redis::RedisResult<TickCounters> {
    let (enqueued, duplicates_skipped, missed): (Option<u64>, Option<u64>, Option<u64>) = redis::cmd("HMGET")
        .arg(keys.ticks())
        .arg(TickCounters::ENQUEUED)
        .arg(TickCounters::DUPLICATES)
        .arg(TickCounters::MISSED)
        .query_async(conn)
        .await?;
    Ok(TickCounters {
        enqueued: enqueued.unwrap_or(0),
        duplicates_skipped: duplicates_skipped.unwrap_or(0),
        missed: missed.unwrap_or(0),
    })
}
