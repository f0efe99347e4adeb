//! Snapshot storage: one JSON string per group (`<ns>:top:{g}`), written in batches through one
//! pipeline of fenced script calls, plus `<ns>:index` (group → version) for freshness counts.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ranq_core::{FreshnessPolicy, GroupId, Keys, Snapshot, Version};
use redis::aio::ConnectionManager;

use crate::CacheError;

const FENCED_WRITE_SOURCE: &str = include_str!("fenced_write.lua");
static FENCED_WRITE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(FENCED_WRITE_SOURCE));

/// How long a tombstone keeps a deleted group from being resurrected by a late refresh.
const TOMBSTONE_TTL: Duration = Duration::from_secs(3600);

/// One write of a batch.
#[derive(Debug, Clone)]
pub enum Write {
    /// Store this snapshot if it is newer than what is cached.
    Snapshot(Snapshot),
    /// The group is not in the source (as of `version`): delete its snapshot.
    Absent { group: GroupId, version: Version },
}

impl Write {
    fn group(&self) -> GroupId {
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

/// Cached groups split by age, as `ranq status` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FreshnessCounts {
    pub cached: u64,
    pub fresh: u64,
    pub stale: u64,
    /// Cached but older than `max_age`: served as MISS.
    pub expired: u64,
    /// Snapshot ages across the cached groups; `None` when nothing is cached.
    pub ages: Option<AgePercentiles>,
}

/// Snapshot ages by nearest rank: half the groups are at most `p50` old, 99 % at most `p99`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgePercentiles {
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

/// A cached group past `stale_after`, as `ranq status --stale` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgedGroup {
    pub group: GroupId,
    pub version: Version,
}

/// Handle to ranq's data in one Redis namespace. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    conn: ConnectionManager,
    keys: Keys,
    /// For pub/sub, which needs a connection of its own; `None` for a cache built from a bare
    /// connection.
    client: Option<redis::Client>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("namespace", &self.keys.namespace()).finish()
    }
}

impl Cache {
    pub fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self { conn, keys, client: None }
    }

    /// Connects to `url` and serves namespace `namespace`.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, CacheError> {
        let mut cache = Self::new(crate::connect(url).await?, Keys::new(namespace));
        cache.client = redis::Client::open(url).ok();
        Ok(cache)
    }

    /// A pub/sub connection subscribed to [`Keys::written_channel`]: each message names groups
    /// whose snapshot may have changed. Fails for a cache built without a URL.
    pub async fn subscribe_written(&self) -> Result<redis::aio::PubSub, CacheError> {
        let client = self.client.as_ref().ok_or(CacheError::NoSubscription)?;
        let subscribe = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(self.keys.written_channel()).await?;
            Ok::<_, CacheError>(pubsub)
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), subscribe)
            .await
            .map_err(|_| CacheError::NoSubscription)?
    }

    /// Publishes `message` on [`Keys::written_channel`] (subscribers' own heartbeats).
    pub async fn publish_written(&self, message: &str) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        redis::cmd("PUBLISH").arg(self.keys.written_channel()).arg(message).query_async::<()>(&mut conn).await?;
        Ok(())
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The underlying connection, for other crates' keys in the same Redis.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub async fn ping(&self) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }

    /// Applies a batch of writes through the fence, in one pipeline, and returns each outcome in
    /// order; the groups' failure records are cleared on the way. The index is updated in the
    /// same pipeline for snapshots (`ZADD GT` keeps it monotonic even when a write is fenced) and
    /// afterwards for the rare groups left without a snapshot.
    pub async fn write_batch(&self, writes: &[Write]) -> Result<Vec<Outcome>, CacheError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
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
                .arg(self.keys.top(group))
                .arg(self.keys.gone(group))
                .arg(write.version())
                .arg(json)
                .arg(TOMBSTONE_TTL.as_secs());
            if let Write::Snapshot(s) = write {
                pipe.cmd("ZADD").arg(self.keys.index()).arg("GT").arg(s.version).arg(group).ignore();
            }
        }
        // A refresh that reached the fence succeeded, whatever the fence decided: it ends the
        // group's run of failures (and any quarantine), in the same round trip.
        let groups: Vec<GroupId> = writes.iter().map(Write::group).collect();
        pipe.cmd("HDEL").arg(self.keys.quarantine_failures()).arg(&groups).ignore();
        pipe.cmd("ZREM").arg(self.keys.quarantine_due()).arg(&groups).ignore();
        // Read processes drop their in-memory copies of these groups (fenced ones needlessly, but
        // the outcomes are not known before the pipeline runs, and one message per batch is cheap).
        pipe.cmd("PUBLISH").arg(self.keys.written_channel()).arg(join_groups(&groups)).ignore();
        let codes: Vec<i64> = self.query_loading_script(&pipe).await?;
        // Deleted now (2), or found deleted at a newer version (3): a retry of a deletion whose
        // reply was lost, whose index update must still happen.
        let unindexed: Vec<GroupId> =
            writes.iter().zip(&codes).filter(|(_, code)| matches!(code, 2 | 3)).map(|(w, _)| w.group()).collect();
        if !unindexed.is_empty() {
            let mut conn = self.conn.clone();
            redis::cmd("ZREM").arg(self.keys.index()).arg(&unindexed).query_async::<()>(&mut conn).await?;
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
        let mut conn = self.conn.clone();
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
        let mut conn = self.conn.clone();
        Ok(redis::cmd("EXISTS").arg(self.keys.gone(group)).query_async::<bool>(&mut conn).await?)
    }

    /// The cached snapshot of `group`, if any. A value that does not decode is an error, which
    /// readers report as a MISS rather than serving garbage.
    pub async fn snapshot(&self, group: GroupId) -> Result<Option<Snapshot>, CacheError> {
        let mut conn = self.conn.clone();
        let key = self.keys.top(group);
        let raw: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
        decode_snapshot(key, raw)
    }

    /// The snapshot of `group` (or why it could not be decoded) and its failure record, in one
    /// round trip: what a reader needs to answer.
    pub async fn snapshot_and_health(
        &self,
        group: GroupId,
    ) -> Result<(Result<Option<Snapshot>, CacheError>, Option<ranq_core::GroupHealth>), CacheError> {
        let mut conn = self.conn.clone();
        let key = self.keys.top(group);
        let (raw, health): (Option<String>, Option<String>) = redis::pipe()
            .cmd("GET")
            .arg(&key)
            .cmd("HGET")
            .arg(self.keys.quarantine_failures())
            .arg(group)
            .query_async(&mut conn)
            .await?;
        let health = health.and_then(|json| crate::health::decode_health(group, &json));
        Ok((decode_snapshot(key, raw), health))
    }

    /// For each group, the newest version the fence knows of (snapshot or tombstone): what
    /// `ranq refresh --wait` compares against the time of the request.
    pub async fn fence_versions(&self, groups: &[GroupId]) -> Result<Vec<Option<Version>>, CacheError> {
        let mut pipe = redis::pipe();
        for &g in groups {
            pipe.cmd("GET").arg(self.keys.top(g)).cmd("GET").arg(self.keys.gone(g));
        }
        let mut conn = self.conn.clone();
        let raw: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
        Ok(raw
            .chunks(2)
            .map(|pair| {
                let snapshot = pair.first().and_then(|s| s.as_deref()).and_then(stored_version);
                let tombstone = pair.get(1).and_then(|s| s.as_deref()).and_then(|s| s.parse().ok());
                snapshot.max(tombstone)
            })
            .collect())
    }

    /// Every group the index knows to be cached, ascending.
    pub async fn cached_groups(&self) -> Result<Vec<GroupId>, CacheError> {
        let mut conn = self.conn.clone();
        let mut groups: Vec<GroupId> =
            redis::cmd("ZRANGE").arg(self.keys.index()).arg(0).arg(-1).query_async(&mut conn).await?;
        groups.sort_unstable();
        Ok(groups)
    }

    /// Adds groups to the public dirty set; returns how many were not already marked.
    pub async fn mark_dirty(&self, groups: &[GroupId]) -> Result<u64, CacheError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("SADD").arg(self.keys.dirty()).arg(groups).query_async(&mut conn).await?)
    }

    /// Counts cached groups by age at `now`, from the index (no snapshot is read).
    pub async fn freshness_counts(
        &self,
        policy: &FreshnessPolicy,
        now: DateTime<Utc>,
    ) -> Result<FreshnessCounts, CacheError> {
        let now_us = now.timestamp_micros();
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let fresh_from = now_us.saturating_sub(micros(policy.stale_after));
        let stale_from = now_us.saturating_sub(micros(policy.max_age));
        let index = self.keys.index();
        let mut conn = self.conn.clone();
        let (cached, fresh, stale): (u64, u64, u64) = redis::pipe()
            .cmd("ZCARD")
            .arg(&index)
            .cmd("ZCOUNT")
            .arg(&index)
            .arg(fresh_from)
            .arg("+inf")
            .cmd("ZCOUNT")
            .arg(&index)
            .arg(stale_from)
            .arg(format!("({fresh_from}"))
            .query_async(&mut conn)
            .await?;
        let ages = self.age_percentiles(cached, now_us).await?;
        Ok(FreshnessCounts { cached, fresh, stale, expired: cached.saturating_sub(fresh + stale), ages })
    }

    /// The index is ordered by version, oldest first, so a percentile of age is one rank lookup.
    /// Nearest rank: the q-quantile of ages is the ⌈q·n⌉-th youngest, which is at rank n − ⌈q·n⌉
    /// from the oldest. O(log n) each.
    async fn age_percentiles(&self, cached: u64, now_us: i64) -> Result<Option<AgePercentiles>, CacheError> {
        if cached == 0 {
            return Ok(None);
        }
        let from_oldest = |q: f64| cached.saturating_sub((q * cached as f64).ceil() as u64);
        let ranks = [0, from_oldest(0.99), from_oldest(0.50)]; // max, p99, p50
        let mut pipe = redis::pipe();
        for rank in ranks {
            pipe.cmd("ZRANGE").arg(self.keys.index()).arg(rank).arg(rank).arg("WITHSCORES");
        }
        let mut conn = self.conn.clone();
        let found: Vec<Vec<(GroupId, i64)>> = pipe.query_async(&mut conn).await?;
        let age = |i: usize| {
            let version = found.get(i).and_then(|v| v.first()).map_or(now_us, |(_, v)| *v);
            u64::try_from(now_us.saturating_sub(version) / 1_000).unwrap_or(0)
        };
        Ok(Some(AgePercentiles { max_ms: age(0), p99_ms: age(1), p50_ms: age(2) }))
    }

    /// How many cached groups fall in each age bucket at `now`: bucket `i` holds the ages in
    /// `(bounds[i-1], bounds[i]]` (the first from zero, and ages below zero from skewed clocks),
    /// and one more bucket holds the ages beyond the last bound. `bounds` must ascend. One
    /// `ZCOUNT` per bucket, O(log n) each, in one round trip.
    pub async fn age_histogram(&self, bounds: &[Duration], now: DateTime<Utc>) -> Result<Vec<u64>, CacheError> {
        let now_us = now.timestamp_micros();
        // An age bound is a version bound, reversed: age ≤ b ⇔ version ≥ now − b.
        let version_at = |age: &Duration| now_us.saturating_sub(i64::try_from(age.as_micros()).unwrap_or(i64::MAX));
        let index = self.keys.index();
        let mut pipe = redis::pipe();
        let mut newer_end = "+inf".to_owned();
        for bound in bounds {
            let from = version_at(bound);
            pipe.cmd("ZCOUNT").arg(&index).arg(from).arg(&newer_end);
            newer_end = format!("({from}");
        }
        pipe.cmd("ZCOUNT").arg(&index).arg("-inf").arg(&newer_end);
        let mut conn = self.conn.clone();
        Ok(pipe.query_async(&mut conn).await?)
    }

    /// Cached groups older than `older_than` at `now`, oldest first (at most `limit`), and how many
    /// there are in all.
    pub async fn oldest_groups(
        &self,
        older_than: Duration,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(u64, Vec<AgedGroup>), CacheError> {
        let micros = i64::try_from(older_than.as_micros()).unwrap_or(i64::MAX);
        let before = format!("({}", now.timestamp_micros().saturating_sub(micros));
        let index = self.keys.index();
        let mut conn = self.conn.clone();
        let (total, oldest): (u64, Vec<(GroupId, i64)>) = redis::pipe()
            .cmd("ZCOUNT")
            .arg(&index)
            .arg("-inf")
            .arg(&before)
            .cmd("ZRANGE")
            .arg(&index)
            .arg("-inf")
            .arg(&before)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        Ok((total, oldest.into_iter().map(|(group, version)| AgedGroup { group, version }).collect()))
    }
}

fn decode_snapshot(key: String, raw: Option<String>) -> Result<Option<Snapshot>, CacheError> {
    raw.map(|json| serde_json::from_str(&json).map_err(|e| CacheError::Corrupt { key, reason: e.to_string() }))
        .transpose()
}

/// Reads the version from a stored snapshot's JSON prefix without decoding the entries.
pub fn stored_version(json: &str) -> Option<Version> {
    let rest = &json[json.find(r#""version":"#)? + 10..];
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Groups as a `written` channel message: `1,2,3`.
pub fn join_groups(groups: &[GroupId]) -> String {
    groups.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_json_prefix() {
        let s = Snapshot::new(4, 1_732_500_000_123_456, vec![]);
        assert_eq!(stored_version(&s.to_json()), Some(1_732_500_000_123_456));
        assert_eq!(stored_version("garbage"), None);
    }
}
