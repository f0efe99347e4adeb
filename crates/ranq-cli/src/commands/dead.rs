//! `ranq dead list|retry|purge`: the dead letter, for the operator.

use std::process::ExitCode;

use std::time::Duration;

use ranq_queue::{Backpressure, DEAD_PAGE, DeadPage, Queue, RetryReport};
use serde_json::json;

use crate::cli::{DeadCommand, DeadListArgs, DeadTargetArgs};
use crate::context::Context;

/// How long one page of `retry` waits at most for room in the queue.
const RETRY_WAIT: Duration = Duration::from_secs(30);

pub async fn dead(ctx: &Context, command: &DeadCommand) -> anyhow::Result<ExitCode> {
    let cache = ctx.cache().await?;
    let queue = ctx.queue(&cache);
    match command {
        DeadCommand::List(args) => list(&queue, args).await,
        DeadCommand::Retry(args) => {
            // The fleet's one backlog bound, as for a tick; what does not fit in time stays dead.
            retry(&queue, args, &Backpressure::of(&ctx.settings.producer).waiting(RETRY_WAIT)).await
        }
        DeadCommand::Purge(args) => purge(&queue, args).await,
    }
}

async fn list(queue: &Queue, args: &DeadListArgs) -> anyhow::Result<ExitCode> {
    let total = queue.stats().await?.dead;
    let ids = queue.dead_ids(args.limit as usize).await?;
    let jobs = queue.dead_jobs(&ids).await?;
    if args.json {
        println!("{}", json!({ "total": total, "jobs": jobs }));
        return Ok(ExitCode::SUCCESS);
    }
    if jobs.is_empty() {
        println!("no dead jobs");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<26}  {:>12}  {:>8}  {:<20}  error", "id", "group", "attempts", "died at");
    for job in &jobs {
        let group = job.group.map_or_else(|| "malformed".to_owned(), |g| g.to_string());
        let attempts = job.attempts.map_or_else(|| "-".to_owned(), |a| a.to_string());
        let died = job.died_at.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        println!("{:<26}  {group:>12}  {attempts:>8}  {died:<20}  {}", job.id, job.error.as_deref().unwrap_or("-"));
        if job.group.is_none() {
            println!("{:<26}  payload: {}", "", job.payload);
        }
    }
    if total > jobs.len() as u64 {
        println!("({} of {total} shown; --limit N for more)", jobs.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// Upper bound on the `SSCAN` steps of one `--all`: far more than any dead letter needs.
const MAX_SCAN_STEPS: usize = 1_000_000;

async fn retry(queue: &Queue, args: &DeadTargetArgs, pressure: &Backpressure) -> anyhow::Result<ExitCode> {
    let mut report = RetryReport::default();
    if args.all {
        // One full SSCAN, retrying each page as it comes: malformed jobs stay behind without
        // hiding the refresh jobs after them. Bounded: a scan ends when its cursor returns to 0.
        let mut cursor = 0;
        for _ in 0..MAX_SCAN_STEPS {
            let DeadPage { next_cursor: next, ids } = queue.scan_dead(cursor, DEAD_PAGE).await?;
            // A member seen twice by the scan was retried the first time: not found now.
            let page = queue.retry_dead(&ids, pressure).await?;
            report.retried += page.retried;
            report.deferred += page.deferred;
            report.malformed.extend(page.malformed);
            cursor = next;
            // A page the backlog would not take: the rest would wait the same way; say so now.
            if cursor == 0 || (page.deferred > 0 && page.retried == 0) {
                break;
            }
        }
        report.malformed.sort();
        report.malformed.dedup();
    } else {
        report = queue.retry_dead(&args.ids, pressure).await?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("retried {} dead jobs", report.retried);
        if !report.malformed.is_empty() {
            println!(
                "left {} malformed jobs dead (they can never run; `ranq dead purge` them)",
                report.malformed.len()
            );
        }
        if report.deferred > 0 {
            println!("left {} jobs dead: the queue's backlog did not drain in time; retry again", report.deferred);
        }
        if !report.not_found.is_empty() {
            println!("not in the dead letter: {}", report.not_found.join(", "));
        }
    }
    // Asking for ids that are not there is worth a non-zero exit for scripts.
    Ok(if report.not_found.is_empty() && report.deferred == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn purge(queue: &Queue, args: &DeadTargetArgs) -> anyhow::Result<ExitCode> {
    let mut purged = 0;
    if args.all {
        // Bounded by the set's size at the start: every page removes what it read.
        let pages = queue.stats().await?.dead.div_ceil(DEAD_PAGE as u64) + 1;
        for _ in 0..pages {
            let ids = queue.dead_ids(DEAD_PAGE).await?;
            if ids.is_empty() {
                break;
            }
            purged += queue.purge_dead(&ids).await?;
        }
    } else {
        purged = queue.purge_dead(&args.ids).await?;
    }
    if args.json {
        println!("{}", json!({ "purged": purged }));
    } else {
        println!("purged {purged} dead jobs");
    }
    Ok(ExitCode::SUCCESS)
}
