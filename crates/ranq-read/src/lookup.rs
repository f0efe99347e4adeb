//! Finding a group's answer: the in-memory copy when there is a live one, else Redis; and what a
//! STALE or a MISS does besides answering. A STALE answer asks for a refresh in the background; a
//! MISS asks for one and, with `read.miss_wait`, waits that long for it to land. A quarantined
//! group is left to its slow retry. While Redis does not answer, the last copy a process holds
//! answers, judged by its age.

use std::time::Duration;

use ranq_cache::{CacheError, Cached, Stored};
use ranq_core::{Freshness, GroupId};
use tokio::time::Instant;

use crate::answer::{Judged, ReadOutcome, classify, judge, read_top, render_head, render_tail, render_top, servable};
use crate::encoding::Coding;
use crate::error::ApiError;
use crate::on_miss::{Asked, Claim, OnMissRefresh};
use crate::state::AppState;
use crate::wire::{QUARANTINED, TopResponse};

/// How often a waiting MISS looks for the snapshot it asked for.
const WAIT_POLL: Duration = Duration::from_millis(10);

/// A served answer: FRESH or STALE, with the snapshot's age.
#[derive(Debug)]
pub(crate) struct Found {
    pub response: TopResponse,
    pub age: Duration,
}

/// An answer ready to send: its head, and its body in the coding asked for.
#[derive(Debug)]
pub(crate) struct PreRendered {
    /// The answer without its entries.
    pub head: TopResponse,
    pub entries: usize,
    pub age: Duration,
    pub body: Vec<u8>,
    /// What `body` is compressed with; `None`: plain JSON.
    pub coding: Option<Coding>,
}

/// Reads a group's answer and records the read; a MISS (or Redis failing) is the error to send.
pub(crate) async fn load(state: &AppState, group: GroupId, limit: usize) -> Result<Found, ApiError> {
    let mut found = find(state, group, limit).await?;
    public_error(&mut found.response);
    Ok(found)
}

async fn find(state: &AppState, group: GroupId, limit: usize) -> Result<Found, ApiError> {
    let started = Instant::now();
    // While the connection looks for a new master, the old one may be a dead host that answers
    // nothing until the timeout: a copy held answers at once instead.
    if state.cache.redis().is_finding_master()
        && let Some(found) = from_last_copy(state, group, limit, "the Redis master is being looked for")
    {
        return Ok(found);
    }
    let read = match tokio::time::timeout(state.redis_wait, read_kept_or_fetched(state, group, limit)).await {
        Ok(read) => read.map_err(|e| e.to_string()),
        Err(_) => Err(format!("redis did not answer within {:?}", state.redis_wait)),
    };
    match read {
        Ok(ReadOutcome::Served { response, age }) => {
            if response.status == Freshness::Stale && !response.quarantined {
                refresh_in_background(state, group);
            }
            state.metrics.record(response.status, Some(age));
            Ok(Found { response, age })
        }
        Ok(ReadOutcome::Miss { age, error }) => {
            if error.is_none()
                && let Some(found) = refresh_and_wait(state, group, limit, started).await
            {
                state.metrics.record(found.response.status, Some(found.age));
                return Ok(found);
            }
            state.metrics.record(Freshness::Miss, age);
            Err(ApiError::Miss { group, quarantined: error.is_some() })
        }
        Err(e) => match from_last_copy(state, group, limit, &e) {
            Some(found) => Ok(found),
            None => {
                state.metrics.record_unanswered(false);
                Err(ApiError::CacheUnavailable(e))
            }
        },
    }
}

/// A quarantined group's answer says that its refreshes fail, not what the database said.
fn public_error(response: &mut TopResponse) {
    if response.error.is_some() {
        response.error = Some(QUARANTINED.to_owned());
    }
}

/// The answer from the last copy this process holds of `group`, judged by its age (FRESH or
/// STALE; past `max_age` it answers nothing), for a read that Redis cannot answer because of
/// `why`.
fn from_last_copy(state: &AppState, group: GroupId, limit: usize, why: &str) -> Option<Found> {
    let copy = state.local.as_ref()?.last_known(group)?;
    let outcome = classify(copy.snapshot.clone(), copy.health.clone(), &state.policy, limit, chrono::Utc::now());
    let ReadOutcome::Served { response, age } = outcome else { return None };
    tracing::debug!(group, why, "redis does not answer; answered from the last copy held");
    state.metrics.record(response.status, Some(age));
    state.metrics.record_unanswered(true);
    Some(Found { response, age })
}

/// The answer from a live in-memory copy, in `coding`: no Redis, no decoding, no serialising of
/// entries, and their compression made once per copy. `None` sends the request down the ordinary
/// path, as does a copy too old to serve (a MISS also asks for a refresh).
pub(crate) fn pre_rendered(
    state: &AppState,
    group: GroupId,
    limit: usize,
    coding: Option<Coding>,
) -> Option<PreRendered> {
    let copy = state.local.as_ref()?.get(group)?;
    let (snapshot, rendered) = (copy.snapshot.as_ref()?, copy.rendered.as_ref()?);
    let Judged::Served { mut head, age } = judge(snapshot, copy.health.as_ref(), &state.policy, chrono::Utc::now())
    else {
        return None;
    };
    public_error(&mut head);
    if head.status == Freshness::Stale && !head.quarantined {
        refresh_in_background(state, group);
    }
    state.metrics.record(head.status, Some(age));
    let (entries, count) = rendered.first(limit);
    let body = match coding {
        None => render_top(&head, entries),
        Some(coding) => {
            let (json, ends) = (rendered.json(), rendered.ends());
            copy.encoded.get(coding, json, ends).answer(&render_head(&head), json, ends, count, &render_tail(&head))
        }
    };
    Some(PreRendered { head, entries: count, age, body, coding })
}

/// [`read_top`], answered from the in-memory copy when there is a live one, and kept there
/// when there is not (a corrupt value is never kept).
async fn read_kept_or_fetched(state: &AppState, group: GroupId, limit: usize) -> Result<ReadOutcome, CacheError> {
    let Some(local) = &state.local else { return read_top(&state.cache, &state.policy, group, limit).await };
    let (snapshot, health) = match local.get(group) {
        Some(kept) => (kept.snapshot.clone(), kept.health.clone()),
        None => {
            let epoch = local.epoch();
            let Cached { stored, health } = state.cache.cached(group).await?;
            let corrupt = matches!(stored, Stored::Corrupt { .. });
            let snapshot = servable(stored);
            if !corrupt {
                local.keep(group, epoch, snapshot.as_ref(), health.as_ref());
            }
            (snapshot, health)
        }
    };
    Ok(classify(snapshot, health, &state.policy, limit, chrono::Utc::now()))
}

pub(crate) fn refresh_in_background(state: &AppState, group: GroupId) {
    let Some(on_miss) = state.on_miss.clone().filter(|o| matches!(o.claim(group), Claim::Ours)) else { return };
    let (cache, metrics) = (state.cache.clone(), state.metrics.clone());
    // Short-lived: a Redis check and a push, each bounded by the connection's timeouts.
    tokio::spawn(async move { metrics.record_refresh(on_miss.push(&cache, group).await) });
}

/// Asks for a refresh of a missing group, then, if a job was pushed for it, polls for it until
/// `read.miss_wait` after the request's start; the served answer if it landed in time.
async fn refresh_and_wait(state: &AppState, group: GroupId, limit: usize, started: Instant) -> Option<Found> {
    let on_miss = state.on_miss.as_ref()?;
    let deadline = started + on_miss.wait();
    let (asked, outcome) = match on_miss.claim(group) {
        Claim::Ours => {
            let asked = on_miss.push(&state.cache, group).await;
            (asked, Some(asked))
        }
        Claim::Recent { outcome } => (Asked::Recent, outcome),
    };
    state.metrics.record_refresh(asked);
    if on_miss.wait().is_zero() {
        return None;
    }
    // Another request's push still under way: learn what came of it before deciding to wait.
    let outcome = match outcome {
        Some(outcome) => Some(outcome),
        None => settled(on_miss, group, deadline).await,
    };
    if outcome != Some(Asked::Enqueued) {
        return None;
    }
    let found = wait_for_refresh(state, group, limit, deadline).await;
    state.metrics.record_wait(found.is_some());
    found
}

/// The outcome of the push another request is making for `group`, polled until `deadline`.
async fn settled(on_miss: &OnMissRefresh, group: GroupId, deadline: Instant) -> Option<Asked> {
    while Instant::now() < deadline {
        if let Some(outcome) = on_miss.outcome(group) {
            return Some(outcome);
        }
        tokio::time::sleep(WAIT_POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
    None
}

/// Polls for `group`'s snapshot until it is served or `deadline` passes.
async fn wait_for_refresh(state: &AppState, group: GroupId, limit: usize, deadline: Instant) -> Option<Found> {
    for poll in 1.. {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(WAIT_POLL.min(left)).await;
        let read = tokio::time::timeout_at(deadline, read_top(&state.cache, &state.policy, group, limit)).await;
        if let Ok(Ok(ReadOutcome::Served { response, age })) = read {
            return Some(Found { response, age });
        }
        // A worker that found the group absent leaves a tombstone and no snapshot: stop waiting.
        if poll % 10 == 0 && state.cache.is_gone(group).await.unwrap_or(false) {
            break;
        }
    }
    None
}
