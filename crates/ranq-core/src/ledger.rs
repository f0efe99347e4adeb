//! The producer's ledger in Redis, as every side sees it: who leads (the lease and its fencing
//! token), which ticks ran, and their counters. The producer writes it; `ranq status` and the
//! read API's `/v1/status` read it. The value formats live here, so the writer and the readers
//! share one definition; the Lua scripts that write the lease and the duplicates counter spell
//! the same formats out and say so.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A fencing token: strictly increasing across every lease ever granted in the namespace.
pub type Token = u64;

/// What one acquire-or-renew attempt on the leader lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// The caller just became leader with this token.
    Acquired(Token),
    /// The caller was and still is leader.
    Renewed(Token),
    /// Another instance leads.
    Standby,
}

/// What claiming a scheduled tick found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickClaim {
    /// The tick is the caller's to enqueue.
    Claimed,
    /// Another instance (or an earlier firing) claimed it already.
    Duplicate,
    /// The lease no longer carries the caller's token.
    NotLeader,
}

/// The stored lease, `<token>|<holder>|<since ms>` (written by the acquire script).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseValue {
    pub token: Token,
    pub holder: String,
    /// When the holder took the lease, ms since the epoch.
    pub since_ms: i64,
}

impl LeaseValue {
    /// Splits a stored lease into its parts; `None` if it is not one.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.splitn(3, '|');
        let token = parts.next()?.parse().ok()?;
        let holder = parts.next()?.to_owned();
        let since_ms = parts.next()?.parse().ok()?;
        Some(Self { token, holder, since_ms })
    }
}

/// The current leader, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaderInfo {
    pub id: String,
    pub since: DateTime<Utc>,
    pub lease_expires_in_ms: u64,
    pub token: Token,
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
        let lease = LeaseValue::parse("7|producer-a|1700000000000").expect("a lease");
        assert_eq!(lease, LeaseValue { token: 7, holder: "producer-a".into(), since_ms: 1_700_000_000_000 });
        assert_eq!(LeaseValue::parse("garbage"), None);
    }
}
