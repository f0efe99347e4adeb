//! An in-process copy of recently read snapshots (`read.local_ttl`), so that a hot group costs a
//! read process no Redis round trip and no decoding.
//!
//! Correctness never rests on it. Workers publish the groups of every batch they write on
//! `<ns>:written`, and a subscriber drops those groups here at once; a copy also expires after
//! `local_ttl` whatever happens to the messages. While the subscription is down, nothing is kept
//! and every read goes to Redis; a subscription that dies silently is found out within seconds,
//! because the subscriber stops hearing its own heartbeats. Status and `age_ms` are computed per
//! request from the snapshot's `computed_at`, so a kept copy ages exactly like the one in Redis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ranq_cache::Cache;
use ranq_core::{GroupHealth, GroupId, Snapshot};
use ranq_runtime::Shutdown;

use crate::answer::RenderedEntries;

/// Groups kept at most; beyond it expired copies are dropped, then all of them.
const CAPACITY: usize = 10_000;
/// Wait before subscribing again after the subscription failed or ended.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);
/// How often a subscriber publishes a heartbeat on the channel it follows. A connection can die
/// without a word (a NAT or a proxy dropping it); hearing nothing, not even its own heartbeats,
/// for [`SILENCE_LIMIT`] is how the subscriber finds out.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const SILENCE_LIMIT: Duration = Duration::from_secs(3);
/// Messages starting with this are heartbeats, not groups.
const HEARTBEAT: &str = "~";

/// What a read found in Redis for one group, with the entries rendered once for every answer.
#[derive(Debug)]
pub struct KeptCopy {
    pub snapshot: Option<Snapshot>,
    pub health: Option<GroupHealth>,
    pub rendered: Option<RenderedEntries>,
}

#[derive(Debug, Clone)]
struct Kept {
    at: Instant,
    copy: Arc<KeptCopy>,
}

/// The copies, and whether the invalidation feed is live.
#[derive(Debug)]
pub struct LocalSnapshots {
    ttl: Duration,
    live: AtomicBool,
    /// Bumped by every invalidation: a read that started before one does not keep its result,
    /// which may be the value the invalidation was about.
    epoch: AtomicU64,
    kept: Mutex<HashMap<GroupId, Kept>>,
}

impl LocalSnapshots {
    /// `None` when `ttl` is zero (the copy is off).
    pub fn new(ttl: Duration) -> Option<Arc<Self>> {
        (!ttl.is_zero()).then(|| {
            Arc::new(Self {
                ttl,
                live: AtomicBool::new(false),
                epoch: AtomicU64::new(0),
                kept: Mutex::new(HashMap::new()),
            })
        })
    }

    /// The kept copy of `group`, if the feed is live and the copy younger than the TTL.
    pub fn get(&self, group: GroupId) -> Option<Arc<KeptCopy>> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.get(&group).filter(|k| k.at.elapsed() < self.ttl).map(|k| k.copy.clone())
    }

    /// The epoch to hand back to [`LocalSnapshots::keep`] after reading Redis.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Keeps what a read found in Redis, unless an invalidation came since `epoch`.
    pub fn keep(&self, group: GroupId, epoch: u64, snapshot: Option<&Snapshot>, health: Option<&GroupHealth>) {
        if !self.live.load(Ordering::Acquire) || self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        // Rendered outside the lock that every read takes.
        let copy = Arc::new(KeptCopy {
            rendered: snapshot.map(|s| RenderedEntries::new(&s.entries)),
            snapshot: snapshot.cloned(),
            health: health.cloned(),
        });
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if kept.len() >= CAPACITY {
            kept.retain(|_, k| k.at.elapsed() < self.ttl);
            // Mostly live copies: start over rather than scan them again on the next insert.
            if kept.len() >= CAPACITY * 9 / 10 {
                kept.clear();
            }
        }
        kept.insert(group, Kept { at: Instant::now(), copy });
    }

    fn invalidate(&self, groups: &str) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for group in groups.split(',').filter_map(|g| g.trim().parse::<GroupId>().ok()) {
            kept.remove(&group);
        }
    }

    fn set_live(&self, live: bool) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        kept.clear();
        self.live.store(live, Ordering::Release);
    }

    /// Follows `<ns>:written` until `shutdown`, resubscribing after any failure; the copy is off
    /// whenever the feed is not live.
    pub async fn follow(self: Arc<Self>, cache: Cache, shutdown: Shutdown) {
        let mut warned = false;
        loop {
            match cache.subscribe_written().await {
                Ok(mut messages) => {
                    warned = false;
                    self.set_live(true);
                    let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
                    let mut heard = Instant::now();
                    loop {
                        tokio::select! {
                            message = messages.next() => match message {
                                Some(groups) => {
                                    heard = Instant::now();
                                    if !groups.starts_with(HEARTBEAT) {
                                        self.invalidate(&groups);
                                    }
                                }
                                None => break,
                            },
                            _ = beat.tick() => {
                                if heard.elapsed() > SILENCE_LIMIT {
                                    break;
                                }
                                if let Err(error) = cache.publish_written(HEARTBEAT).await {
                                    tracing::debug!(%error, "could not publish the feed heartbeat");
                                }
                            }
                            () = shutdown.wait() => {
                                self.set_live(false);
                                return;
                            }
                        }
                    }
                    self.set_live(false);
                    tracing::warn!("lost the snapshot-change feed; reading Redis on every request until it is back");
                }
                Err(error) if !warned => {
                    warned = true;
                    tracing::warn!(%error, "no snapshot-change feed; reading Redis on every request until there is one");
                }
                Err(_) => {}
            }
            tokio::select! {
                () = tokio::time::sleep(RESUBSCRIBE_AFTER) => {}
                () = shutdown.wait() => return,
            }
        }
    }
}
