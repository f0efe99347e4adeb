//! Read-only and marking commands: `ranq dirty`, `ranq get`, `ranq status`.

use std::process::ExitCode;

use ranq_core::GroupId;
use ranq_read::response::ReadOutcome;
use serde_json::json;

use crate::cli::{DirtyArgs, GetArgs, StatusArgs};
use crate::context::{Context, UsageError};

pub async fn dirty(ctx: &Context, args: &DirtyArgs) -> anyhow::Result<ExitCode> {
    let groups = args
        .groups
        .iter()
        .map(|g| ranq_core::parse_group_id(g).map_err(|e| UsageError(e.to_string())))
        .collect::<Result<Vec<GroupId>, _>>()?;
    let cache = ctx.cache().await?;
    let added = cache.mark_dirty(&groups).await?;
    println!("marked {} groups dirty ({added} newly)", groups.len());
    Ok(ExitCode::SUCCESS)
}

/// Prints what `GET /v1/groups/{g}/top` would answer. Exit 0 when served (FRESH or STALE), 1 on
/// a MISS, so scripts can test for a cached group.
pub async fn get(ctx: &Context, args: &GetArgs) -> anyhow::Result<ExitCode> {
    let group = ranq_core::parse_group_id(&args.group).map_err(|e| UsageError(e.to_string()))?;
    let limit = ranq_core::parse_limit(args.limit.as_deref()).map_err(|e| UsageError(e.to_string()))?;
    let cache = ctx.cache().await?;
    let policy = ctx.settings.read.freshness();
    match ranq_read::read_top(&cache, &policy, group, limit).await? {
        ReadOutcome::Served(response, _) if args.json => {
            println!("{}", serde_json::to_string(&response)?);
            Ok(ExitCode::SUCCESS)
        }
        ReadOutcome::Served(response, _) => {
            println!(
                "group {}  {}  age {} ms  version {}",
                response.group, response.status, response.age_ms, response.version
            );
            if let Some(error) = &response.error {
                println!("quarantined: its refresh keeps failing, this is its last good snapshot: {error}");
            }
            println!("{:>5}  {:>20}  {:>20}", "rank", "member", "score");
            for e in &response.entries {
                println!("{:>5}  {:>20}  {:>20}", e.rank, e.member, e.score);
            }
            Ok(ExitCode::SUCCESS)
        }
        ReadOutcome::Miss { error, .. } if args.json => {
            println!("{}", serde_json::to_string(&ranq_read::response::miss_body(group, error))?);
            Ok(ExitCode::from(1))
        }
        ReadOutcome::Miss { error, .. } => {
            println!("group {group}  MISS  (not cached, or older than read.max_age)");
            if let Some(error) = error {
                println!("quarantined: its refresh keeps failing: {error}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// Quarantined groups listed by `status` (the count covers all of them).
const QUARANTINE_SHOWN: usize = 10;

pub async fn status(ctx: &Context, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let cache = ctx.cache().await?;
    let keys = cache.keys().clone();
    let mut conn = cache.connection();
    let q = ctx.queue(&cache).stats().await?;
    let ticks = ranq_producer::read_tick_counters(&mut conn, &keys).await?;
    let last_tick = ranq_producer::read_last_tick(&mut conn, &keys).await?;
    let leader = ranq_producer::read_leader(&mut conn, &keys).await?;
    let f = cache.freshness_counts(&ctx.settings.read.freshness(), chrono::Utc::now()).await?;
    let (quarantined, worst) = cache.quarantined(QUARANTINE_SHOWN).await?;
    let quarantine: Vec<_> = worst
        .iter()
        .map(|(group, h)| {
            json!({ "group": group, "failures": h.failures, "error": h.error, "since": h.since(), "retry_at": h.retry_at() })
        })
        .collect();
    let status = json!({
        "leader": leader,
        "last_tick": last_tick,
        "ticks": ticks,
        "queue": { "pending": q.pending, "running": q.running, "dead": q.dead },
        "workers": { "alive": q.workers_alive },
        "groups": { "cached": f.cached, "fresh": f.fresh, "stale": f.stale, "expired": f.expired, "quarantined": quarantined },
        "quarantine": quarantine,
    });
    if args.json {
        println!("{status}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("namespace    {}", keys.namespace());
    match &leader {
        Some(l) => println!(
            "leader       {} (since {}, lease expires in {} ms, token {})",
            l.id, l.since, l.lease_expires_in_ms, l.token
        ),
        None => println!("leader       none (no producer holds the lease)"),
    }
    match &last_tick {
        Some(t) => {
            println!("last tick    {} ({} groups enqueued at {}, {} deferred)", t.id, t.groups, t.at, t.deferred)
        }
        None => println!("last tick    none yet"),
    }
    println!(
        "ticks        {} enqueued, {} duplicates skipped, {} missed",
        ticks.enqueued, ticks.duplicates_skipped, ticks.missed
    );
    println!("queue        {} pending, {} running, {} dead", q.pending, q.running, q.dead);
    println!("workers      {} alive", q.workers_alive);
    println!("groups       {} cached: {} fresh, {} stale, {} expired (MISS)", f.cached, f.fresh, f.stale, f.expired);
    println!("quarantined  {quarantined}");
    for (group, h) in &worst {
        let retry = h.retry_at().map_or_else(|| "-".to_owned(), |t| t.format("%H:%M:%S").to_string());
        println!(
            "  group {group}: {} failures since {}, retry at {retry}: {}",
            h.failures,
            h.since().format("%H:%M:%S"),
            h.error
        );
    }
    if quarantined > worst.len() as u64 {
        println!("  … and {} more", quarantined - worst.len() as u64);
    }
    Ok(ExitCode::SUCCESS)
}
