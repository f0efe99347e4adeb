//! The leader lease: any number of producers run, exactly one enqueues.
//!
//! The lease is one Redis key, `SET NX PX`, holding `<token>|<holder>|<since ms>`. Each new lease
//! takes the next fencing token from a counter; the tick claim script checks that the lease still
//! carries the claimer's token, so an ex-leader that was paused past its lease (GC, SIGSTOP, a
//! partition) cannot enqueue a tick after a standby took over. The holder renews well before
//! expiry and deletes the lease on SIGTERM so a standby takes over at once.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ranq_core::Keys;
use redis::aio::ConnectionManager;
use serde::Serialize;

static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("lease_acquire.lua")));
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("lease_release.lua")));

/// A fencing token: strictly increasing across every lease ever granted in the namespace.
pub type Token = u64;

/// What one acquire-or-renew attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// This instance just became leader with `token`.
    Acquired(Token),
    /// This instance was and still is leader.
    Renewed(Token),
    /// Another instance leads.
    Standby,
}

/// The current leader, as `ranq status` shows it (CONTRACT §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaderInfo {
    pub id: String,
    pub since: DateTime<Utc>,
    pub lease_expires_in_ms: u64,
    pub token: Token,
}

/// One instance's handle on the lease.
#[derive(Clone)]
pub struct Lease {
    conn: ConnectionManager,
    keys: Keys,
    holder: String,
    ttl: Duration,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("holder", &self.holder).field("ttl", &self.ttl).finish()
    }
}

impl Lease {
    pub fn new(conn: ConnectionManager, keys: Keys, holder: String, ttl: Duration) -> Self {
        Self { conn, keys, holder, ttl }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes the lease if it is free, renews it if it is ours.
    pub async fn acquire_or_renew(&self) -> redis::RedisResult<LeaseState> {
        let mut conn = self.conn.clone();
        let (token, fresh): (Token, u8) = ACQUIRE
            .key(self.keys.leader())
            .key(self.keys.leader_token())
            .arg(&self.holder)
            .arg(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(Utc::now().timestamp_millis())
            .invoke_async(&mut conn)
            .await?;
        Ok(match (token, fresh) {
            (0, _) => LeaseState::Standby,
            (token, 1) => LeaseState::Acquired(token),
            (token, _) => LeaseState::Renewed(token),
        })
    }

    /// Gives the lease up (if still ours) so a standby can take over without waiting for expiry.
    pub async fn release(&self) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        RELEASE.key(self.keys.leader()).arg(&self.holder).invoke_async(&mut conn).await
    }
}

/// Reads the current leader, if any.
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

/// Splits a lease value `<token>|<holder>|<since ms>`.
fn parse_lease(value: &str) -> Option<(Token, String, i64)> {
    let mut parts = value.splitn(3, '|');
    let token = parts.next()?.parse().ok()?;
    let holder = parts.next()?.to_owned();
    let since = parts.next()?.parse().ok()?;
    Some((token, holder, since))
}

/// This instance's view of its own leadership, valid only until the lease would have expired
/// since the last successful renewal: if Redis stops answering, the instance stops believing it
/// leads before anyone else can take over.
#[derive(Debug, Clone, Copy, Default)]
pub struct Leadership {
    token: Option<(Token, Instant)>,
}

impl Leadership {
    /// Records a successful acquire or renew at `at`, valid for `ttl`.
    pub fn confirm(&mut self, token: Token, at: Instant, ttl: Duration) {
        self.token = Some((token, at + ttl));
    }

    pub fn clear(&mut self) {
        self.token = None;
    }

    /// The token, if this instance still leads at `now`.
    pub fn current(&self, now: Instant) -> Option<Token> {
        self.token.filter(|(_, until)| now < *until).map(|(t, _)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_values_round_trip() {
        assert_eq!(parse_lease("7|producer-a|1700000000000"), Some((7, "producer-a".into(), 1_700_000_000_000)));
        assert_eq!(parse_lease("garbage"), None);
    }

    #[test]
    fn leadership_lapses_when_renewals_stop() {
        let start = Instant::now();
        let mut l = Leadership::default();
        assert_eq!(l.current(start), None);
        l.confirm(3, start, Duration::from_secs(10));
        assert_eq!(l.current(start + Duration::from_secs(9)), Some(3));
        assert_eq!(l.current(start + Duration::from_secs(10)), None);
        l.confirm(3, start, Duration::from_secs(10));
        l.clear();
        assert_eq!(l.current(start), None);
    }
}
