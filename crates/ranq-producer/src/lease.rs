//! The leader lease: any number of producers run, exactly one enqueues.
//!
//! The lease is one Redis key, `SET NX PX`, holding `<token>|<holder>|<since ms>`. Each new lease
//! takes the next fencing token from a counter; the tick claim script checks that the lease still
//! carries the claimer's token, so an ex-leader that was paused past its lease (GC, SIGSTOP, a
//! partition) cannot enqueue a tick after a standby took over. The holder renews well before
//! expiry and deletes the lease on SIGTERM so a standby takes over at once.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use chrono::Utc;
use ranq_core::{Keys, Token};
use redis::aio::ConnectionManager;

static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("lease_acquire.lua")));
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("lease_release.lua")));

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
