//! Refresh on read (`read.on_miss`): a reader who finds a group missing or stale asks the workers
//! for a refresh through the queue — the on-demand half of the design, without the database ever
//! entering the read path.
//!
//! Readers must not be able to flood the queue, so a request goes through three guards before it
//! costs a push: a group the workers found absent from the source (its tombstone) is never asked
//! for; a group this process asked for within the last second is not asked for again; and the
//! process pushes at most `read.refresh_rate` jobs a second. Past the guards, the queue's pending
//! flag coalesces what many read processes ask for the same group into one job.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ranq_cache::Cache;
use ranq_core::{GroupId, Reason, RefreshJob};
use ranq_queue::{Backpressure, Queue};
use ranq_runtime::settings::{OnMiss, Settings};

/// How long a group asked for is not asked for again by this process.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(1);
/// Groups remembered as recently asked for; the memory is cleared beyond this.
const RECENT_CAPACITY: usize = 10_000;

/// What asking for a refresh did (the `outcome` label of `ranq_read_refreshes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// A refresh job was pushed (or coalesced with one already pending).
    Enqueued,
    /// This process asked for the group less than a second ago.
    Recent,
    /// The per-second cap was reached.
    Limited,
    /// The source does not have the group: nothing to refresh.
    Absent,
    /// The queue is full, or Redis failed; the producer's next tick will do.
    Skipped,
}

impl Asked {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enqueued => "enqueued",
            Self::Recent => "recent",
            Self::Limited => "limited",
            Self::Absent => "absent",
            Self::Skipped => "skipped",
        }
    }
}

/// The refresh-on-read policy of one read process.
#[derive(Debug)]
pub struct OnMissRefresh {
    queue: Queue,
    /// The producer's backlog bound, one push at a time, never waiting: past it, reads stop
    /// pushing and leave the group to the next tick.
    pressure: Backpressure,
    wait: Duration,
    rate: u32,
    /// Pushes in the current one-second window: (window start, count).
    window: Mutex<(Instant, u32)>,
    /// Groups asked for within [`ASK_AGAIN_AFTER`]: when, and what came of it (`None` while the
    /// push is under way).
    recent: Mutex<HashMap<GroupId, (Instant, Option<Asked>)>>,
}

/// What [`OnMissRefresh::claim`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This request asks: it must call [`OnMissRefresh::push`].
    Ours,
    /// Another request asked within the last second; what came of it (`None` while its push is
    /// under way: see [`OnMissRefresh::outcome`]).
    Recent { outcome: Option<Asked> },
}

impl OnMissRefresh {
    /// `None` when `read.on_miss` is `none`. The wait, counted from the request's start, is kept
    /// short of the request timeout, so a waiting MISS still answers 404 rather than 503.
    pub fn new(settings: &Settings, cache: &Cache) -> Option<Self> {
        let read = &settings.read;
        let wait = read.miss_wait.min(read.request_timeout.saturating_sub(Duration::from_millis(250)));
        let pressure = Backpressure { chunk: 1, ..Backpressure::of(&settings.producer) }.waiting(Duration::ZERO);
        (read.on_miss == OnMiss::Refresh).then(|| Self {
            queue: Queue::new(cache.redis(), cache.keys(), &settings.worker),
            pressure,
            wait,
            rate: read.refresh_rate,
            window: Mutex::new((Instant::now(), 0)),
            recent: Mutex::new(HashMap::new()),
        })
    }

    /// How long a MISS waits for the refresh it asked for.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// The first guard, without IO: whether this request asks for `group`, or another one did
    /// within the last second.
    pub fn claim(&self, group: GroupId) -> Claim {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&(at, outcome)) = recent.get(&group)
            && now.duration_since(at) < ASK_AGAIN_AFTER
        {
            return Claim::Recent { outcome };
        }
        if recent.len() >= RECENT_CAPACITY {
            recent.retain(|_, (at, _)| now.duration_since(*at) < ASK_AGAIN_AFTER);
            // Mostly live entries: start over rather than scan them again on the next insert.
            if recent.len() >= RECENT_CAPACITY * 9 / 10 {
                recent.clear();
            }
        }
        recent.insert(group, (now, None));
        Claim::Ours
    }

    /// What came of the latest ask for `group`, once its push is over.
    pub fn outcome(&self, group: GroupId) -> Option<Asked> {
        let recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.get(&group).and_then(|&(_, outcome)| outcome)
    }

    /// The rest of the guards (the per-second cap first: it costs no IO), then the push. Only
    /// after a [`Claim::Ours`].
    pub async fn push(&self, cache: &Cache, group: GroupId) -> Asked {
        let asked = self.try_push(cache, group).await;
        let mut recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = recent.get_mut(&group) {
            entry.1 = Some(asked);
        }
        asked
    }

    async fn try_push(&self, cache: &Cache, group: GroupId) -> Asked {
        if !self.take_token(Instant::now()) {
            return Asked::Limited;
        }
        match cache.is_gone(group).await {
            Ok(true) => return Asked::Absent,
            Ok(false) => {}
            Err(error) => {
                tracing::debug!(group, %error, "refresh on read skipped: cache unavailable");
                return Asked::Skipped;
            }
        }
        let job = RefreshJob::new(group, Reason::Read);
        match self.queue.enqueue(&[job], &self.pressure).await {
            Ok(report) if report.pushed == 1 => Asked::Enqueued,
            Ok(_) => Asked::Skipped,
            Err(error) => {
                tracing::warn!(group, %error, "refresh on read could not be enqueued");
                Asked::Skipped
            }
        }
    }

    /// A fixed one-second window: coarse, but it bounds what any burst of reads can push.
    fn take_token(&self, now: Instant) -> bool {
        let mut window = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if now.duration_since(window.0) >= Duration::from_secs(1) {
            *window = (now, 0);
        }
        if window.1 >= self.rate {
            return false;
        }
        window.1 += 1;
        true
    }
}
