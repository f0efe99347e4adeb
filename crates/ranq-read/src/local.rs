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
//!
//! The copies take at most `read.local_max_bytes` (counted from what each holds: entries, their
//! JSON, and an allowance for the compressed pieces made on first use). Past it, the expired
//! copies go first, then the oldest half, so a scan over many distinct groups costs a bounded
//! amount of memory and a sort now and then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ranq_cache::Cache;
use ranq_core::{GroupHealth, GroupId, Snapshot};
use ranq_runtime::Shutdown;

use crate::answer::RenderedEntries;
use crate::encoding::Encoded;

/// What a copy costs besides its entries: the map slot, the `Arc`, the head's fields.
const COPY_OVERHEAD: usize = 256;
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
    /// The entries compressed, per coding, made on the first request that asks for it.
    pub encoded: Encoded,
}

impl KeptCopy {
    /// About what the copy takes in memory: its entries twice (decoded and as JSON), the ends of
    /// the entries, and for the compressed pieces, which are made later, as much as the JSON
    /// (both codings' cuts together come to less).
    fn bytes(&self) -> usize {
        let entries = self.snapshot.as_ref().map_or(0, |s| s.entries.len() * std::mem::size_of::<ranq_core::Entry>());
        let json = self.rendered.as_ref().map_or(0, |r| 2 * r.json().len() + 8 * r.ends().len());
        let error = self.health.as_ref().map_or(0, |h| h.error.len());
        COPY_OVERHEAD + entries + json + error
    }
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
    bytes: usize,
}

/// The copies and what they take.
#[derive(Debug, Default)]
struct Store {
    map: HashMap<GroupId, Kept>,
    bytes: usize,
}

impl Store {
    fn insert(&mut self, group: GroupId, kept: Kept) {
        self.bytes += kept.bytes;
        if let Some(old) = self.map.insert(group, kept) {
            self.bytes -= old.bytes;
        }
    }

    /// Makes room for `bytes` more within `max`: expired copies first, then the oldest half.
    fn make_room(&mut self, bytes: usize, max: usize, ttl: Duration) {
        if self.bytes + bytes <= max {
            return;
        }
        self.map.retain(|_, k| k.at.elapsed() < ttl);
        self.bytes = self.map.values().map(|k| k.bytes).sum();
        // Mostly live copies: drop the older half rather than scan them again on the next insert.
        if self.bytes + bytes > max / 10 * 9 && !self.map.is_empty() {
            let mut ages: Vec<Instant> = self.map.values().map(|k| k.at).collect();
            let middle = ages.len() / 2;
            let (_, &mut newest_dropped, _) = ages.select_nth_unstable(middle);
            self.map.retain(|_, k| k.at > newest_dropped);
            self.bytes = self.map.values().map(|k| k.bytes).sum();
        }
    }
}

/// The copies, and whether the invalidation feed is live.
#[derive(Debug)]
pub struct LocalSnapshots {
    ttl: Duration,
    max_bytes: usize,
    live: AtomicBool,
    /// Bumped by every invalidation: a read that started before one does not keep its result,
    /// which may be the value the invalidation was about.
    epoch: AtomicU64,
    kept: Mutex<Store>,
}

impl LocalSnapshots {
    /// `None` when `ttl` is zero (the copy is off). The copies take at most about `max_bytes`.
    pub fn new(ttl: Duration, max_bytes: u64) -> Option<Arc<Self>> {
        (!ttl.is_zero()).then(|| {
            Arc::new(Self {
                ttl,
                max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
                live: AtomicBool::new(false),
                epoch: AtomicU64::new(0),
                kept: Mutex::new(Store::default()),
            })
        })
    }

    /// About what the copies take now, in bytes.
    pub fn bytes(&self) -> usize {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner).bytes
    }

    /// The kept copy of `group`, if the feed is live and the copy younger than the TTL.
    pub fn get(&self, group: GroupId) -> Option<Arc<KeptCopy>> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.map.get(&group).filter(|k| !k.superseded && k.at.elapsed() < self.ttl).map(|k| k.copy.clone())
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
            encoded: Encoded::default(),
        });
        let bytes = copy.bytes();
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let superseded = self.epoch.load(Ordering::Acquire) != epoch;
        if superseded && kept.map.get(&group).is_some_and(|k| version(&k.copy) > version(&copy)) {
            return;
        }
        kept.make_room(bytes, self.max_bytes, self.ttl);
        kept.insert(group, Kept { at: Instant::now(), copy, superseded, bytes });
    }

    fn invalidate(&self, groups: &str) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for group in groups.split(',').filter_map(|g| g.trim().parse::<GroupId>().ok()) {
            if let Some(k) = kept.map.get_mut(&group) {
                k.superseded = true;
            }
        }
    }

    /// The copy of `group` kept last, however old, for when Redis does not answer: the last the
    /// process knew, which the caller judges by its age like any snapshot. Copies outlive a lost
    /// feed for this alone, and stay for it when the feed is back.
    pub fn last_known(&self, group: GroupId) -> Option<Arc<KeptCopy>> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.map.get(&group).map(|k| k.copy.clone())
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
            kept.map.values_mut().for_each(|k| k.superseded = true);
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
        let local = LocalSnapshots::new(Duration::from_secs(60), 1 << 20).expect("a non-zero TTL keeps copies");
        local.set_live(true);
        local
    }

    fn version(copy: Option<Arc<KeptCopy>>) -> Option<i64> {
        copy.and_then(|c| super::version(&c))
    }

    /// The bound is only as good as the estimate it counts: a copy with both codings' pieces made
    /// must not take more than it is counted for.
    #[test]
    fn a_copy_takes_no_more_than_it_is_counted_for_once_compressed_both_ways() {
        let entries: Vec<ranq_core::Entry> = (1..=100)
            .map(|rank| ranq_core::Entry {
                rank,
                member: 1_000_000 + i64::from(rank) * 7_919,
                score: 9_000_000 - i64::from(rank),
            })
            .collect();
        let snapshot = Snapshot::new(1, 1, entries);
        let copy = KeptCopy {
            rendered: Some(RenderedEntries::new(&snapshot.entries)),
            snapshot: Some(snapshot),
            health: None,
            encoded: Encoded::default(),
        };
        let counted = copy.bytes();
        let rendered = copy.rendered.as_ref().expect("rendered");
        for coding in [crate::encoding::Coding::Gzip, crate::encoding::Coding::Brotli] {
            copy.encoded.get(coding, rendered.json(), rendered.ends());
        }
        let snapshot = copy.snapshot.as_ref().expect("snapshot");
        let taken = std::mem::size_of::<KeptCopy>()
            + snapshot.entries.capacity() * std::mem::size_of::<ranq_core::Entry>()
            + rendered.json().len()
            + std::mem::size_of_val(rendered.ends())
            + copy.encoded.heap_bytes();
        assert!(taken <= counted, "a copy takes {taken} bytes, counted as {counted}");
    }

    #[test]
    fn the_copies_stay_within_their_memory_bound_however_many_groups_are_read() {
        let local = LocalSnapshots::new(Duration::from_secs(60), 1 << 20).expect("copies");
        local.set_live(true);
        let entries: Vec<ranq_core::Entry> =
            (1..=100).map(|rank| ranq_core::Entry { rank, member: i64::from(rank), score: 1 }).collect();
        let mut most = 0;
        for group in 0..5_000 {
            local.keep(group, local.epoch(), Some(&Snapshot::new(group, 1, entries.clone())), None);
            most = most.max(local.bytes());
        }
        assert!(most <= 1 << 20, "{most} bytes kept, bound 1 MiB");
        assert!(local.bytes() > (1 << 20) / 4, "the bound is used, not emptied: {} bytes", local.bytes());
        assert_eq!(version(local.get(4_999)), Some(1), "the newest copy is kept");
        assert_eq!(version(local.get(0)), None, "the oldest went");
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
