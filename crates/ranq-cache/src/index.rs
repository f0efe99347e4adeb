//! `<ns>:index`, every cached group scored by its snapshot's version: freshness counts, age
//! percentiles and histograms, and the oldest groups, each in a few O(log n) commands instead of
//! reading every snapshot.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ranq_core::{FreshnessPolicy, GroupId, Version};

use crate::{Cache, CacheError};

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

/// The groups older than some age: how many there are, and the oldest of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OldestGroups {
    pub total: u64,
    /// Oldest first, at most the limit asked for.
    pub first: Vec<AgedGroup>,
}

/// A duration in microseconds, the unit of versions.
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Cache {
    /// Every group the index knows to be cached, ascending.
    pub async fn cached_groups(&self) -> Result<Vec<GroupId>, CacheError> {
        let mut groups: Vec<GroupId> =
            redis::cmd("ZRANGE").arg(self.keys.index()).arg(0).arg(-1).query_async(&mut self.conn()).await?;
        groups.sort_unstable();
        Ok(groups)
    }

    /// Whether no group is cached (first start, or Redis lost its data).
    pub async fn is_empty(&self) -> Result<bool, CacheError> {
        let cached: u64 = redis::cmd("ZCARD").arg(self.keys.index()).query_async(&mut self.conn()).await?;
        Ok(cached == 0)
    }

    /// How many cached groups hold a snapshot read after `since`. One `ZCOUNT`, whatever the
    /// number of groups: what a benchmark polls while a tick runs.
    pub async fn count_refreshed_since(&self, since: Version) -> Result<u64, CacheError> {
        Ok(redis::cmd("ZCOUNT")
            .arg(self.keys.index())
            .arg(format!("({since}"))
            .arg("+inf")
            .query_async(&mut self.conn())
            .await?)
    }

    /// Counts cached groups by age at `now`, from the index (no snapshot is read).
    pub async fn freshness_counts(
        &self,
        policy: &FreshnessPolicy,
        now: DateTime<Utc>,
    ) -> Result<FreshnessCounts, CacheError> {
        let now_us = now.timestamp_micros();
        let fresh_from = now_us.saturating_sub(micros(policy.stale_after));
        let stale_from = now_us.saturating_sub(micros(policy.max_age));
        let index = self.keys.index();
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
            .query_async(&mut self.conn())
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
        let found: Vec<Vec<(GroupId, i64)>> = pipe.query_async(&mut self.conn()).await?;
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
        let index = self.keys.index();
        let mut pipe = redis::pipe();
        // An age bound is a version bound, reversed: age ≤ b ⇔ version ≥ now − b.
        let mut newer_end = "+inf".to_owned();
        for bound in bounds {
            let from = now_us.saturating_sub(micros(*bound));
            pipe.cmd("ZCOUNT").arg(&index).arg(from).arg(&newer_end);
            newer_end = format!("({from}");
        }
        pipe.cmd("ZCOUNT").arg(&index).arg("-inf").arg(&newer_end);
        Ok(pipe.query_async(&mut self.conn()).await?)
    }

    /// Cached groups older than `older_than` at `now`: how many, and the oldest `limit`.
    pub async fn oldest_groups(
        &self,
        older_than: Duration,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<OldestGroups, CacheError> {
        let before = format!("({}", now.timestamp_micros().saturating_sub(micros(older_than)));
        let index = self.keys.index();
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
            .query_async(&mut self.conn())
            .await?;
        Ok(OldestGroups {
            total,
            first: oldest.into_iter().map(|(group, version)| AgedGroup { group, version }).collect(),
        })
    }
}
