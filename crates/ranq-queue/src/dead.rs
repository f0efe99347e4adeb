//! The dead letter: jobs that will not be tried again on their own — malformed payloads, and
//! refreshes that failed on every one of their attempts. `ranq dead list|retry|purge` manages it.
//!
//! apalis-redis keeps a dead job as a member of `<queue>:dead` plus its payload (in the job data
//! hash) and its metadata (status, attempts, the last error as `{"Err": "..."}`).

use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};
use ranq_core::{Incoming, RefreshJob};
use serde::Serialize;

use crate::{Backpressure, Queue, QueueError};

static PURGE_DEAD: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("lua/purge_dead.lua")));
static RECOVER_WORKER: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/recover_worker.lua")));

/// Most dead jobs one call reads or changes; `--all` works through the set in pages of this.
pub const DEAD_PAGE: usize = 1_000;

/// One step of a scan over the dead letter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadPage {
    /// Where the next step starts; 0 once the scan is complete.
    pub next_cursor: u64,
    /// About the count asked for, some possibly seen by an earlier step.
    pub ids: Vec<String>,
}

/// One dead job, as `ranq dead list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadJob {
    pub id: String,
    /// The payload as stored (JSON for every job ranq pushed), cut to a readable length.
    pub payload: String,
    /// The group, when the payload is a valid refresh job.
    pub group: Option<ranq_core::GroupId>,
    /// The last error.
    pub error: Option<String>,
    pub attempts: Option<u32>,
    pub died_at: Option<DateTime<Utc>>,
}

/// What `ranq dead retry` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetryReport {
    /// Dead jobs turned into fresh refresh jobs (and removed from the dead letter).
    pub retried: usize,
    /// Dead jobs left alone because their payload is not a refresh job (purge them instead).
    pub malformed: Vec<String>,
    /// Ids asked for that are not in the dead letter.
    pub not_found: Vec<String>,
    /// Refresh jobs left dead because the queue's backlog did not drain in time; retry again.
    pub deferred: usize,
}

/// What became of the jobs a stopped worker had fetched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Put back at the front of the queue.
    pub requeued: usize,
    /// Sent to the dead letter: their payload or metadata would stop any worker that fetched them.
    pub dead: usize,
}

impl Queue {
    /// Ids of up to `limit` dead jobs (in no particular order).
    pub async fn dead_ids(&self, limit: usize) -> Result<Vec<String>, QueueError> {
        let mut ids: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut cursor: u64 = 0;
        // SSCAN pages are small and may repeat members; bounded by the limit and a page count.
        for _ in 0..limit.div_ceil(100).max(1) * 10 {
            let DeadPage { next_cursor: next, ids: page } = self.scan_dead(cursor, limit.clamp(1, DEAD_PAGE)).await?;
            for id in page {
                if ids.len() < limit && seen.insert(id.clone()) {
                    ids.push(id);
                }
            }
            cursor = next;
            if cursor == 0 || ids.len() >= limit {
                break;
            }
        }
        Ok(ids)
    }

    /// One `SSCAN` step over the dead letter from `cursor` (0 to start), of about `count` ids.
    /// Members removed meanwhile do not disturb the scan, so a caller may retry or purge each
    /// page as it goes.
    pub async fn scan_dead(&self, cursor: u64, count: usize) -> Result<DeadPage, QueueError> {
        let (next_cursor, ids): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg(self.config.dead_jobs_set())
            .arg(cursor)
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.conn())
            .await?;
        Ok(DeadPage { next_cursor, ids })
    }

    /// The dead jobs `ids` (those that are dead; others are left out).
    pub async fn dead_jobs(&self, ids: &[String]) -> Result<Vec<DeadJob>, QueueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        pipe.cmd("SMISMEMBER").arg(self.config.dead_jobs_set()).arg(ids);
        pipe.cmd("HMGET").arg(self.config.job_data_hash()).arg(ids);
        for id in ids {
            pipe.cmd("HMGET")
                .arg(format!("{}:{id}", self.config.job_meta_hash()))
                .arg(&["result", "attempts", "done_at"]);
        }
        let mut replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
        let metas: Vec<(Option<String>, Option<u32>, Option<i64>)> = replies
            .split_off(2.min(replies.len()))
            .into_iter()
            .map(|v| redis::from_redis_value(v).unwrap_or((None, None, None)))
            .collect();
        let mut replies = replies.into_iter();
        let dead: Vec<bool> = redis::from_redis_value(replies.next().unwrap_or(redis::Value::Nil)).unwrap_or_default();
        let payloads: Vec<Option<Vec<u8>>> =
            redis::from_redis_value(replies.next().unwrap_or(redis::Value::Nil)).unwrap_or_default();
        Ok(ids
            .iter()
            .zip(dead)
            .zip(payloads)
            .zip(metas)
            .filter(|(((_, dead), _), _)| *dead)
            .map(|(((id, _), payload), (result, attempts, done_at))| {
                let payload = payload.unwrap_or_default();
                DeadJob {
                    id: id.clone(),
                    group: decode(&payload).ok().map(|job| job.group),
                    payload: shorten(&String::from_utf8_lossy(&payload)),
                    error: result.map(|r| last_error(&r)),
                    attempts,
                    died_at: done_at.and_then(|s| Utc.timestamp_opt(s, 0).single()),
                }
            })
            .collect())
    }

    /// Pushes a fresh refresh job for each dead job in `ids` that holds one, as `pressure`
    /// allows, and removes those from the dead letter. A retried group coalesces with a refresh
    /// already pending.
    pub async fn retry_dead(&self, ids: &[String], pressure: &Backpressure) -> Result<RetryReport, QueueError> {
        let mut report = RetryReport::default();
        let found = self.dead_jobs(ids).await?;
        report.not_found = ids.iter().filter(|id| !found.iter().any(|j| &j.id == *id)).cloned().collect();
        let mut jobs = Vec::new();
        let mut retried = Vec::new();
        for dead in found {
            match dead.group {
                Some(group) => {
                    jobs.push(RefreshJob::new(group, ranq_core::Reason::Manual));
                    retried.push(dead.id);
                }
                None => report.malformed.push(dead.id),
            }
        }
        // Push first, then forget: a crash in between leaves a duplicate, never a lost job. The
        // backlog bound applies as for a tick; what does not fit in time stays dead.
        let pushed = self.enqueue(&jobs, pressure).await?;
        report.deferred = pushed.deferred;
        retried.truncate(pushed.pushed);
        self.purge_dead(&retried).await?;
        report.retried = retried.len();
        Ok(report)
    }

    /// Deletes the dead jobs `ids`; returns how many there were.
    pub async fn purge_dead(&self, ids: &[String]) -> Result<usize, QueueError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn();
        let mut invocation = PURGE_DEAD.key(self.config.dead_jobs_set());
        invocation.key(self.config.job_data_hash()).key(self.config.job_meta_hash()).arg(ids);
        Ok(invocation.invoke_async(&mut conn).await?)
    }

    /// Takes back the jobs that `worker` (stopped, never to run again under that name) had
    /// fetched: those whose payload does not even decode go to the dead letter — they would stop
    /// every worker that fetched them — and the rest go back to the front of the queue now
    /// rather than after the orphan window.
    pub async fn recover_stopped_worker(&self, worker: &str) -> Result<Recovered, QueueError> {
        let mut conn = self.conn();
        let inflight = format!("{}:{worker}", self.config.inflight_jobs_set());
        let ids: Vec<String> = redis::cmd("SMEMBERS").arg(&inflight).query_async(&mut conn).await?;
        if ids.is_empty() {
            return Ok(Recovered::default());
        }
        let payloads: Vec<Option<Vec<u8>>> =
            redis::cmd("HMGET").arg(self.config.job_data_hash()).arg(&ids).query_async(&mut conn).await?;
        // apalis fails a whole fetch on a job whose metadata lacks these fields (evicted, or
        // edited by hand); requeued, such a job would stop the next worker too, forever.
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET").arg(format!("{}:{id}", self.config.job_meta_hash())).arg(&[
                "attempts",
                "max_attempts",
                "status",
            ]);
        }
        let metas: Vec<(Option<String>, Option<String>, Option<String>)> = pipe.query_async(&mut conn).await?;
        let mut invocation = RECOVER_WORKER.key(&inflight);
        invocation
            .key(self.config.active_jobs_list())
            .key(self.config.dead_jobs_set())
            .key(self.config.job_meta_hash())
            .arg(Utc::now().timestamp());
        for ((id, payload), meta) in ids.iter().zip(payloads).zip(metas) {
            let runnable_meta = meta.0.is_some_and(|a| a.parse::<u32>().is_ok())
                && meta.1.is_some_and(|m| m.parse::<u32>().is_ok())
                && meta.2.is_some_and(|s| s.parse::<apalis::prelude::Status>().is_ok());
            match payload.map(|p| serde_json::from_slice::<Incoming>(&p)) {
                Some(Ok(_)) if !runnable_meta => invocation.arg(id).arg("dead").arg("job metadata missing or corrupt"),
                Some(Ok(_)) => invocation.arg(id).arg("requeue").arg(""),
                Some(Err(e)) => invocation.arg(id).arg("dead").arg(format!("undecodable payload: {e}")),
                // No payload at all: nothing to run or to show; dead, so an operator can see it.
                None => invocation.arg(id).arg("dead").arg("payload missing"),
            };
        }
        let (requeued, dead): (usize, usize) = invocation.invoke_async(&mut conn).await?;
        Ok(Recovered { requeued, dead })
    }
}

fn decode(payload: &[u8]) -> Result<RefreshJob, String> {
    serde_json::from_slice::<Incoming>(payload).map_err(|e| e.to_string())?.into_job()
}

/// The error message inside apalis's stored result (`{"Err":"..."}`), or the raw text.
fn last_error(result: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(result) {
        Ok(serde_json::Value::Object(map)) => match map.get("Err") {
            Some(serde_json::Value::String(e)) => e.clone(),
            Some(other) => other.to_string(),
            None => result.to_owned(),
        },
        _ => result.to_owned(),
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let cut = (0..=MAX).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_error_is_read_from_apalis_result_json() {
        assert_eq!(last_error(r#"{"Err":"AbortError: malformed refresh job"}"#), "AbortError: malformed refresh job");
        assert_eq!(last_error("plain"), "plain");
    }

    #[test]
    fn only_refresh_jobs_have_a_group() {
        assert_eq!(decode(br#"{"group":9}"#).map(|j| j.group), Ok(9));
        assert!(decode(b"{\"grp\":9}").is_err());
        assert!(decode(b"\xff not json").is_err());
    }
}
