//! Refresh failures per group and the quarantine built on them.
//!
//! A group whose rows break the query fails on every refresh; retrying it every tick burns a
//! batch's time for nothing. After `quarantine_after` failures in a row it is quarantined: the
//! producer leaves it out of ticks until its retry time, its last good snapshot keeps being served
//! (flagged with the error), and one successful refresh ends it (`Cache::write_batch` clears the
//! record in the same round trip as the write).

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ranq_core::{GroupHealth, GroupId};

use crate::codec::{decode_health, join_groups};
use crate::{Cache, CacheError};

static RECORD_FAILURES: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/record_failures.lua")));

/// One group's failed refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFailure {
    pub group: GroupId,
    /// Why, in one line.
    pub error: String,
}

/// What recording a batch's failures did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedFailures {
    /// Groups quarantined by these failures.
    pub quarantined: Vec<GroupId>,
    /// Groups short of quarantine, marked dirty to be tried again next tick.
    pub marked_dirty: Vec<GroupId>,
}

/// The quarantined groups: how many, and the records of the first few (soonest retry first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quarantine {
    pub total: u64,
    pub first: Vec<(GroupId, GroupHealth)>,
}

/// When failures turn into a quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantinePolicy {
    pub after: u32,
    pub retry: Duration,
}

impl Cache {
    /// Counts one more failure for each group. Groups still short of quarantine are
    /// marked dirty, so that a dirty-mode producer tries them again next tick as a full sweep
    /// would; their failed job was acked and no other mark may come.
    pub async fn record_failures(
        &self,
        failures: &[GroupFailure],
        policy: QuarantinePolicy,
        now: DateTime<Utc>,
    ) -> Result<RecordedFailures, CacheError> {
        if failures.is_empty() {
            return Ok(RecordedFailures::default());
        }
        let mut invocation = RECORD_FAILURES.key(self.keys.quarantine_failures());
        invocation
            .key(self.keys.quarantine_due())
            .arg(now.timestamp_millis())
            .arg(policy.after.max(1))
            .arg(u64::try_from(policy.retry.as_millis()).unwrap_or(u64::MAX));
        for failure in failures {
            invocation.arg(failure.group).arg(&failure.error);
        }
        let mut conn = self.conn();
        let (quarantined, again): (Vec<GroupId>, Vec<GroupId>) = invocation.invoke_async(&mut conn).await?;
        // Outside the script: another hash slot than the quarantine keys, and pub/sub.
        let mut pipe = redis::pipe();
        if !again.is_empty() {
            pipe.cmd("SADD").arg(self.keys.dirty()).arg(&again).ignore();
        }
        if !quarantined.is_empty() {
            // Their answers now carry the quarantine flag: read processes drop their copies.
            pipe.cmd("PUBLISH").arg(self.keys.written_channel()).arg(join_groups(&quarantined)).ignore();
        }
        if !again.is_empty() || !quarantined.is_empty() {
            pipe.query_async::<()>(&mut conn).await?;
        }
        Ok(RecordedFailures { quarantined, marked_dirty: again })
    }

    /// The failure record of `group`, if its last refresh failed.
    pub async fn health(&self, group: GroupId) -> Result<Option<GroupHealth>, CacheError> {
        let raw: Option<String> =
            redis::cmd("HGET").arg(self.keys.quarantine_failures()).arg(group).query_async(&mut self.conn()).await?;
        Ok(raw.and_then(|json| decode_health(group, &json)))
    }

    /// Quarantined groups whose retry time is after `now`: the producer leaves them out.
    pub async fn quarantined_until_later(&self, now: DateTime<Utc>) -> Result<Vec<GroupId>, CacheError> {
        Ok(redis::cmd("ZRANGE")
            .arg(self.keys.quarantine_due())
            .arg(format!("({}", now.timestamp_millis()))
            .arg("+inf")
            .arg("BYSCORE")
            .query_async(&mut self.conn())
            .await?)
    }

    /// Quarantined groups whose retry is due at `now` (at most `limit`).
    pub async fn quarantine_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<GroupId>, CacheError> {
        Ok(redis::cmd("ZRANGE")
            .arg(self.keys.quarantine_due())
            .arg("-inf")
            .arg(now.timestamp_millis())
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit.max(1))
            .query_async(&mut self.conn())
            .await?)
    }

    /// How many groups are quarantined, and the records of the first `limit` (soonest retry first).
    pub async fn quarantined(&self, limit: usize) -> Result<Quarantine, CacheError> {
        let mut conn = self.conn();
        let (total, groups): (u64, Vec<GroupId>) = redis::pipe()
            .cmd("ZCARD")
            .arg(self.keys.quarantine_due())
            .cmd("ZRANGE")
            .arg(self.keys.quarantine_due())
            .arg(0)
            .arg(limit.saturating_sub(1))
            .query_async(&mut conn)
            .await?;
        if groups.is_empty() || limit == 0 {
            return Ok(Quarantine { total, first: Vec::new() });
        }
        let raw: Vec<Option<String>> =
            redis::cmd("HMGET").arg(self.keys.quarantine_failures()).arg(&groups).query_async(&mut conn).await?;
        let first = groups
            .into_iter()
            .zip(raw)
            .filter_map(|(g, json)| json.and_then(|j| decode_health(g, &j)).map(|h| (g, h)))
            .collect();
        Ok(Quarantine { total, first })
    }
}
