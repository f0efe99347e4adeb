//! An in-process copy of recently read snapshots (`read.local_ttl`), so that a hot group costs a
//! read process no Redis round trip and no decoding.
//!
//! Correctness never rests on it. Workers publish the groups of every batch they write on
//! `<ns>:written`, and a subscriber drops those groups here at once; a copy also expires after
//! `local_ttl` whatever happens to the messages. While the subscription is down, no copy answers
//! and every read goes to Redis; a subscription that dies silently is found out within seconds,
//! because the subscriber stops hearing its own heartbeats. The copies held when it went down are
//! kept for one use only: the last thing known of a group when Redis itself does not answer (a
//! failover, say), served as its age says — FRESH, STALE, or not at all past `max_age` — instead
//! of a 503. They go when the subscription is back. Status and `age_ms` are computed per
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

/// The version of a copy's snapshot; `None` (no snapshot) is older than any.
fn version(copy: &KeptCopy) -> Option<ranq_core::Version> {
    copy.snapshot.as_ref().map(|s| s.version)
}

#[derive(Debug, Clone)]
struct Kept {
    at: Instant,
    copy: Arc<KeptCopy>,
    /// A worker announced a newer write of the group: this copy answers no read any more, but
    /// stays the last thing known of it, should Redis not answer.
    superseded: bool,
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
        kept.get(&group).filter(|k| !k.superseded && k.at.elapsed() < self.ttl).map(|k| k.copy.clone())
    }

    /// The epoch to hand back to [`LocalSnapshots::keep`] after reading Redis.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Keeps what a read found in Redis. If an invalidation came since `epoch`, the read may be
    /// what it was about: then it answers no read, but is still the last thing known of the
    /// group when it is no older than the copy held.
    pub fn keep(&self, group: GroupId, epoch: u64, snapshot: Option<&Snapshot>, health: Option<&GroupHealth>) {
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        // Rendered outside the lock that every read takes.
        let copy = Arc::new(KeptCopy {
            rendered: snapshot.map(|s| RenderedEntries::new(&s.entries)),
            snapshot: snapshot.cloned(),
            health: health.cloned(),
        });
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let superseded = self.epoch.load(Ordering::Acquire) != epoch;
        if superseded && kept.get(&group).is_some_and(|k| version(&k.copy) > version(&copy)) {
            return;
        }
        if kept.len() >= CAPACITY {
            kept.retain(|_, k| k.at.elapsed() < self.ttl);
            // Mostly live copies: start over rather than scan them again on the next insert.
            if kept.len() >= CAPACITY * 9 / 10 {
                kept.clear();
            }
        }
        kept.insert(group, Kept { at: Instant::now(), copy, superseded });
    }

    fn invalidate(&self, groups: &str) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for group in groups.split(',').filter_map(|g| g.trim().parse::<GroupId>().ok()) {
            if let Some(k) = kept.get_mut(&group) {
                k.superseded = true;
            }
        }
    }

    /// The copy of `group` kept last, however old, for when Redis does not answer: the last the
    /// process knew, which the caller judges by its age like any snapshot. Copies outlive a lost
    /// feed for this alone, and stay for it when the feed is back.
    pub fn last_known(&self, group: GroupId) -> Option<Arc<KeptCopy>> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.get(&group).map(|k| k.copy.clone())
    }

    /// The feed came back (`true`) or was lost (`false`). Either way the copies stay for
    /// [`LocalSnapshots::last_known`] only: they missed the feed's messages meanwhile, so none
    /// answers a read again until a read from Redis replaces it. On a cluster the feed can be back
    /// (on another master) while the slots of a failed master are not yet: the copies of those
    /// groups are what reads are answered with until they are.
    fn set_live(&self, live: bool) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if live {
            kept.values_mut().for_each(|k| k.superseded = true);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(group: GroupId, version: i64) -> Snapshot {
        Snapshot::new(group, version, vec![ranq_core::Entry { rank: 1, member: 1, score: version }])
    }

    fn live() -> Arc<LocalSnapshots> {
        let local = LocalSnapshots::new(Duration::from_secs(60)).expect("a non-zero TTL keeps copies");
        local.set_live(true);
        local
    }

    fn version(copy: Option<Arc<KeptCopy>>) -> Option<i64> {
        copy.and_then(|c| super::version(&c))
    }

    #[test]
    fn an_announced_write_stops_the_copy_answering_but_keeps_it_as_the_last_known() {
        let local = live();
        local.keep(7, local.epoch(), Some(&snapshot(7, 1_000)), None);
        assert_eq!(version(local.get(7)), Some(1_000));
        local.invalidate("7,8");
        assert_eq!(version(local.get(7)), None, "a superseded copy answers no read");
        assert_eq!(version(local.last_known(7)), Some(1_000));
    }

    #[test]
    fn a_read_that_raced_an_invalidation_answers_nothing_but_is_the_last_known_unless_older() {
        let local = live();
        local.keep(7, local.epoch(), Some(&snapshot(7, 2_000)), None);
        let before = local.epoch();
        local.invalidate("7");
        local.keep(7, before, Some(&snapshot(7, 1_000)), None);
        assert_eq!(version(local.last_known(7)), Some(2_000), "an older read does not replace a newer copy");
        local.keep(7, before, Some(&snapshot(7, 3_000)), None);
        assert_eq!(version(local.get(7)), None, "a read that raced an invalidation answers no read");
        assert_eq!(version(local.last_known(7)), Some(3_000));
    }

    #[test]
    fn copies_outlive_a_lost_feed_for_the_fallback_only_and_stay_so_when_it_is_back() {
        let local = live();
        local.keep(7, local.epoch(), Some(&snapshot(7, 1_000)), None);
        local.set_live(false);
        assert_eq!(version(local.get(7)), None, "no copy answers while the feed is down");
        assert_eq!(version(local.last_known(7)), Some(1_000));
        local.keep(8, local.epoch(), Some(&snapshot(8, 1_000)), None);
        assert_eq!(version(local.last_known(8)), None, "nothing new is kept while the feed is down");
        local.set_live(true);
        assert_eq!(version(local.get(7)), None, "the feed's missed messages void every copy for reads");
        assert_eq!(version(local.last_known(7)), Some(1_000), "but it is still the last known");
        local.keep(7, local.epoch(), Some(&snapshot(7, 2_000)), None);
        assert_eq!(version(local.get(7)), Some(2_000), "a read from Redis makes a live copy again");
    }
}
