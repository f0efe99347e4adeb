//! The producer's bookkeeping in Redis, as both sides see it: the producer writes the leader
//! lease, the tick counters and the last tick; `ranq status` and the read API's `/v1/status`
//! read them (CONTRACT §6). The value formats live here, so the writer and the readers share one
//! definition; the producer's Lua scripts, which write the lease and the duplicates counter, spell
//! the same formats out and say so.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A fencing token: strictly increasing across every lease ever granted in the namespace.
pub type Token = u64;

/// The current leader, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaderInfo {
    pub id: String,
    pub since: DateTime<Utc>,
    pub lease_expires_in_ms: u64,
    pub token: Token,
}

/// Splits a lease value `<token>|<holder>|<since ms>` (written by the producer's acquire
/// script) into its token, holder and start.
pub fn parse_lease(value: &str) -> Option<(Token, String, i64)> {
    let mut parts = value.splitn(3, '|');
    let token = parts.next()?.parse().ok()?;
    let holder = parts.next()?.to_owned();
    let since = parts.next()?.parse().ok()?;
    Some((token, holder, since))
}

/// The most recent tick that was enqueued (`<ns>:{producer}:last_tick`, JSON).
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

/// Tick counters since the namespace was created (`<ns>:{producer}:ticks`, a hash).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickCounters {
    pub enqueued: u64,
    pub duplicates_skipped: u64,
    pub missed: u64,
}

impl TickCounters {
    /// The hash fields of the counters.
    pub const ENQUEUED: &'static str = "enqueued";
    pub const DUPLICATES: &'static str = "duplicates_skipped";
    pub const MISSED: &'static str = "missed";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_values_round_trip() {
        assert_eq!(parse_lease("7|producer-a|1700000000000"), Some((7, "producer-a".into(), 1_700_000_000_000)));
        assert_eq!(parse_lease("garbage"), None);
    }
}
