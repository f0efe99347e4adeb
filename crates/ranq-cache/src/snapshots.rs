//! Snapshot storage: one JSON string per group (`<ns>:top:{g}`), written in batches through one
//! pipeline of fenced script calls, and read back whole or by its version alone.

use std::ops::ControlFlow;
use std::sync::LazyLock;
use std::time::Duration;

use ranq_core::{GroupHealth, GroupId, Snapshot, Version};

use crate::codec::{decode_health, join_groups, stored_version};
use crate::{Cache, CacheError};

const FENCED_WRITE_SOURCE: &str = include_str!("lua/fenced_write.lua");
static FENCED_WRITE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(FENCED_WRITE_SOURCE));

/// How long a tombstone keeps a deleted group from being resurrected by a late refresh.
const TOMBSTONE_TTL: Duration = Duration::from_secs(3600);
/// Groups whose versions one round trip reads.
const VERSIONS_PER_ROUND_TRIP: usize = 1_000;
/// The bytes of a stored snapshot that hold its group and version (see `fenced_write.lua`).
const VERSION_PREFIX: usize = 96;
/// How often [`Cache::wait_until_refreshed`] looks again.
const REFRESH_POLL: Duration = Duration::from_millis(100);

/// One write of a batch.
#[derive(Debug, Clone)]
pub enum Write {
    /// Store this snapshot if it is newer than what is cached.
    Snapshot(Snapshot),
    /// The group is not in the source (as of `version`): delete its snapshot.
    Absent { group: GroupId, version: Version },
}

impl Write {
    pub fn group(&self) -> GroupId {
        match self {
            Self::Snapshot(s) => s.group,
            Self::Absent { group, .. } => *group,
        }
    }

    fn version(&self) -> Version {
        match self {
            Self::Snapshot(s) => s.version,
            Self::Absent { version, .. } => *version,
        }
    }
}

/// What the fence did with one write (also the `outcome` label of `ranq_refreshes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Written,
    Fenced,
    Deleted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Written => "written",
            Self::Fenced => "fenced",
            Self::Deleted => "deleted",
        }
    }
}

/// What is stored under a group's snapshot key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Nothing: never cached, deleted, or lost.
    Absent,
    Found(Snapshot),
    /// A value that does not decode. Readers answer MISS rather than serve it; the next refresh
    /// replaces it.
    Corrupt {
        reason: String,
    },
}

/// Everything a reader needs of one group, read in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub stored: Stored,
    /// The group's failure record, if its last refresh failed.
    pub health: Option<GroupHealth>,
}

impl Cache {
    /// Applies a batch of writes through the fence, in one pipeline, and returns each outcome in
    /// order; the groups' failure records are cleared on the way. The index is updated in the
    /// same pipeline for snapshots (`ZADD GT` keeps it monotonic even when a write is fenced) and
    /// afterwards for the rare groups left without a snapshot.
    pub async fn write_batch(&self, writes: &[Write]) -> Result<Vec<Outcome>, CacheError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let keys = &self.keys;
        let mut pipe = redis::pipe();
        for write in writes {
            let group = write.group();
            let json = match write {
                Write::Snapshot(s) => s.to_json(),
                Write::Absent { .. } => String::new(),
            };
            pipe.cmd("EVALSHA")
                .arg(FENCED_WRITE.get_hash())
                .arg(2)
                .arg(keys.top(group))
                .arg(keys.gone(group))
                .arg(write.version())
                .arg(json)
                .arg(TOMBSTONE_TTL.as_secs());
            if let Write::Snapshot(s) = write {
                pipe.cmd("ZADD").arg(keys.index()).arg("GT").arg(s.version).arg(group).ignore();
            }
        }
        // A refresh that reached the fence succeeded, whatever the fence decided: it ends the
        // group's run of failures (and any quarantine), in the same round trip.
        let groups: Vec<GroupId> = writes.iter().map(Write::group).collect();
        pipe.cmd("HDEL").arg(keys.quarantine_failures()).arg(&groups).ignore();
        pipe.cmd("ZREM").arg(keys.quarantine_due()).arg(&groups).ignore();
        // Read processes drop their in-memory copies of these groups (fenced ones needlessly, but
        // the outcomes are not known before the pipeline runs, and one message per batch is cheap).
        pipe.cmd("PUBLISH").arg(keys.written_channel()).arg(join_groups(&groups)).ignore();
        let codes: Vec<i64> = self.query_loading_script(&pipe).await?;
        // Deleted now (2), or found deleted at a newer version (3): a retry of a deletion whose
        // reply was lost, whose index update must still happen.
        let unindexed: Vec<GroupId> =
            writes.iter().zip(&codes).filter(|(_, code)| matches!(code, 2 | 3)).map(|(w, _)| w.group()).collect();
        if !unindexed.is_empty() {
            redis::cmd("ZREM").arg(keys.index()).arg(&unindexed).query_async::<()>(&mut self.conn()).await?;
        }
        Ok(codes
            .into_iter()
            .map(|code| match code {
                1 => Outcome::Written,
                2 => Outcome::Deleted,
                _ => Outcome::Fenced,
            })
            .collect())
    }

    /// Runs a pipeline of `EVALSHA`s, loading the script once if Redis does not know it (first
    /// use, or after a Redis restart).
    async fn query_loading_script(&self, pipe: &redis::Pipeline) -> Result<Vec<i64>, CacheError> {
        let mut conn = self.conn();
        match pipe.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                redis::cmd("SCRIPT").arg("LOAD").arg(FENCED_WRITE_SOURCE).query_async::<String>(&mut conn).await?;
                Ok(pipe.query_async(&mut conn).await?)
            }
            other => Ok(other?),
        }
    }

    /// Whether a worker found `group` absent from the source within the tombstone's lifetime (and
    /// no refresh has found it since).
    pub async fn is_gone(&self, group: GroupId) -> Result<bool, CacheError> {
        Ok(redis::cmd("EXISTS").arg(self.keys.gone(group)).query_async::<bool>(&mut self.conn()).await?)
    }

    /// The cached snapshot of `group`, if any. A value that does not decode is an error, which
    /// readers report as a MISS rather than serving garbage.
    pub async fn snapshot(&self, group: GroupId) -> Result<Option<Snapshot>, CacheError> {
        let key = self.keys.top(group);
        let raw: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut self.conn()).await?;
        match decode(raw) {
            Stored::Found(snapshot) => Ok(Some(snapshot)),
            Stored::Absent => Ok(None),
            Stored::Corrupt { reason } => Err(CacheError::Corrupt { key, reason }),
        }
    }

    /// The snapshot of `group` and its failure record, in one round trip: what a reader needs to
    /// answer.
    pub async fn cached(&self, group: GroupId) -> Result<Cached, CacheError> {
        let (raw, health): (Option<String>, Option<String>) = redis::pipe()
            .cmd("GET")
            .arg(self.keys.top(group))
            .cmd("HGET")
            .arg(self.keys.quarantine_failures())
            .arg(group)
            .query_async(&mut self.conn())
            .await?;
        let health = health.and_then(|json| decode_health(group, &json));
        let stored = decode(raw);
        if let Stored::Corrupt { reason } = &stored {
            tracing::warn!(key = %self.keys.top(group), %reason, "corrupt snapshot read as a MISS");
        }
        Ok(Cached { stored, health })
    }

    /// For each group, the newest version the fence knows of (snapshot or tombstone): what
    /// `ranq refresh --wait` compares against the time of the request. Only the first bytes of
    /// each snapshot are read.
    pub async fn fence_versions(&self, groups: &[GroupId]) -> Result<Vec<Option<Version>>, CacheError> {
        let mut versions = Vec::with_capacity(groups.len());
        for chunk in groups.chunks(VERSIONS_PER_ROUND_TRIP) {
            let mut pipe = redis::pipe();
            for &g in chunk {
                pipe.cmd("GETRANGE").arg(self.keys.top(g)).arg(0).arg(VERSION_PREFIX - 1);
                pipe.cmd("GET").arg(self.keys.gone(g));
            }
            let raw: Vec<Option<String>> = pipe.query_async(&mut self.conn()).await?;
            versions.extend(raw.chunks(2).map(|pair| {
                let snapshot = pair.first().and_then(|s| s.as_deref()).and_then(stored_version);
                let tombstone = pair.get(1).and_then(|s| s.as_deref()).and_then(|s| s.parse().ok());
                snapshot.max(tombstone)
            }));
        }
        Ok(versions)
    }

    /// The groups of `groups` whose fenced version is not newer than `since`: refreshed by a
    /// read that began before it, or not at all.
    pub async fn not_refreshed_since(&self, groups: &[GroupId], since: Version) -> Result<Vec<GroupId>, CacheError> {
        let versions = self.fence_versions(groups).await?;
        Ok(groups.iter().zip(versions).filter(|(_, v)| v.is_none_or(|v| v <= since)).map(|(g, _)| *g).collect())
    }

    /// Waits until every group of `groups` was refreshed by a read that began after `since`, or
    /// until `timeout`. After each look `on_progress` is told how many are done, and may stop the
    /// wait early. A failed look (Redis restarting, say) counts as no progress. Returns the
    /// groups still waiting.
    pub async fn wait_until_refreshed(
        &self,
        groups: &[GroupId],
        since: Version,
        timeout: Duration,
        mut on_progress: impl FnMut(usize) -> ControlFlow<()>,
    ) -> Vec<GroupId> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut waiting: Vec<GroupId> = groups.to_vec();
        loop {
            if let Ok(still) = self.not_refreshed_since(&waiting, since).await {
                waiting = still;
            }
            let go_on = on_progress(groups.len() - waiting.len());
            if waiting.is_empty() || go_on.is_break() || tokio::time::Instant::now() >= deadline {
                return waiting;
            }
            tokio::time::sleep(REFRESH_POLL).await;
        }
    }
}

fn decode(raw: Option<String>) -> Stored {
    let Some(json) = raw else { return Stored::Absent };
    match serde_json::from_str(&json) {
        Ok(snapshot) => Stored::Found(snapshot),
        Err(e) => Stored::Corrupt { reason: e.to_string() },
    }
}
