//! The leader lease: any number of producers run, exactly one enqueues.
//!
//! The lease is one Redis key, `SET NX PX`, holding `<token>|<holder>|<since ms>`. Each new lease
//! takes the next fencing token from a counter; the tick claim script checks that the lease still
//! carries the claimer's token, so an ex-leader that was paused past its lease (GC, SIGSTOP, a
//! partition) cannot enqueue a tick after a standby took over. The holder renews well before
//! expiry and deletes the lease on SIGTERM so a standby takes over at once.

use std::time::{Duration, Instant};

use ranq_cache::{CacheError, Ledger};
use ranq_core::{LeaseState, Token};

/// One instance's handle on the lease.
#[derive(Debug, Clone)]
pub struct Lease {
    ledger: Ledger,
    holder: String,
    ttl: Duration,
}

impl Lease {
    pub fn new(ledger: Ledger, holder: String, ttl: Duration) -> Self {
        Self { ledger, holder, ttl }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes the lease if it is free, renews it if it is ours.
    pub async fn acquire_or_renew(&self) -> Result<LeaseState, CacheError> {
        self.ledger.acquire_or_renew(&self.holder, self.ttl).await
    }

    /// Gives the lease up (if still ours) so a standby can take over without waiting for expiry.
    pub async fn release(&self) -> Result<bool, CacheError> {
        self.ledger.release(&self.holder).await
    }

    /// Whether the lease in Redis still carries `token`.
    pub async fn still_carries(&self, token: Token) -> bool {
        self.ledger.lease_token().await.ok().flatten() == Some(token)
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
