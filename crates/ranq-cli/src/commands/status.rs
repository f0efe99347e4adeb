//! `ranq status`: the fleet at a glance — producer, queue, workers, freshness, quarantine — as a
//! table, as one JSON object, redrawn every second with `--watch`, or as the list of groups past
//! `stale_after` with `--stale`.
//!
//! The report itself is `ranq-status`'s (the read API serves the same object at `/v1/status`);
//! this module draws it for a terminal.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use ranq_cache::Cache;
use ranq_status::StatusReport;
use serde_json::json;

use super::human::age;
use crate::cli::StatusArgs;
use crate::context::Context;

/// Quarantined groups listed by `status` (the count covers all of them).
const QUARANTINE_SHOWN: usize = 10;

/// How often `--watch` redraws.
const WATCH_EVERY: Duration = Duration::from_secs(1);

pub async fn status(ctx: &Context, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let cache = ctx.cache().await?;
    if args.stale {
        return stale(ctx, &cache, args).await;
    }
    if args.watch {
        return watch(ctx, &cache, args.json).await;
    }
    let report = gather(ctx, &cache).await?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", render(&report, &ctx.settings.read));
    }
    Ok(ExitCode::SUCCESS)
}

/// Redraws every second until Ctrl-C or SIGTERM. On a terminal the screen is cleared between
/// frames; otherwise frames follow each other (with `--json`, one object per line). A frame that
/// cannot be gathered shows the error, and the next second tries again.
async fn watch(ctx: &Context, cache: &Cache, json: bool) -> anyhow::Result<ExitCode> {
    let stop = ranq_runtime::shutdown::signalled();
    tokio::pin!(stop);
    let redraw = !json && std::io::stdout().is_terminal();
    let mut every = tokio::time::interval(WATCH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return Ok(ExitCode::SUCCESS),
            _ = every.tick() => {}
        }
        let frame = match gather(ctx, cache).await {
            Ok(report) if json => format!("{}\n", report.to_json()),
            Ok(report) => render(&report, &ctx.settings.read),
            Err(e) if json => format!("{}\n", json!({ "error": ranq_core::redact_url(&format!("{e:#}")) })),
            Err(e) => format!("error: {} (retrying every second)\n", ranq_core::redact_url(&format!("{e:#}"))),
        };
        let mut out = std::io::stdout().lock();
        let written = if redraw {
            writeln!(out, "\x1b[H\x1b[2J{frame}(every {}s; Ctrl-C to stop)", WATCH_EVERY.as_secs())
        } else if json {
            write!(out, "{frame}")
        } else {
            writeln!(out, "{frame}")
        };
        if written.and_then(|()| out.flush()).is_err() {
            return Ok(ExitCode::SUCCESS); // the reader went away
        }
    }
}

/// Reads the report with the settings' freshness policy and heartbeat.
async fn gather(ctx: &Context, cache: &Cache) -> anyhow::Result<StatusReport> {
    let policy = ctx.settings.read.freshness();
    Ok(StatusReport::gather(cache, &ctx.queue(cache), &policy, QUARANTINE_SHOWN).await?)
}

/// The table, one section per line group, labels in the left column.
fn render(r: &StatusReport, read: &ranq_runtime::settings::ReadSettings) -> String {
    let mut out = String::new();
    let mut row = |label: &str, text: String| {
        let _ = writeln!(out, "{label:<11}{text}");
    };
    row("ranq", format!("namespace {} · {}", r.namespace, r.now.format("%Y-%m-%d %H:%M:%S UTC")));
    match &r.leader {
        Some(l) => row(
            "producer",
            format!(
                "leader {} (token {}) since {}, lease expires in {}",
                l.id,
                l.token,
                l.since.format("%H:%M:%S"),
                age(l.lease_expires_in_ms)
            ),
        ),
        None => row("producer", "no leader: no producer holds the lease (is `ranq producer` running?)".into()),
    }
    match &r.last_tick {
        Some(t) => row("", format!("last tick {} · {} groups enqueued, {} deferred", t.id, t.groups, t.deferred)),
        None => row("", "no tick yet".into()),
    }
    let t = &r.ticks;
    row(
        "",
        format!("ticks {} enqueued · {} duplicates skipped · {} missed", t.enqueued, t.duplicates_skipped, t.missed),
    );
    let q = &r.queue;
    row("queue", format!("{} pending · {} running · {} dead", q.pending, q.running, q.dead));
    row("workers", format!("{} alive", q.workers_alive));
    let f = &r.groups;
    row(
        "groups",
        format!("{} cached: {} FRESH · {} STALE · {} MISS (older than max_age)", f.cached, f.fresh, f.stale, f.expired),
    );
    if let Some(a) = f.ages {
        row(
            "",
            format!(
                "age p50 {} · p99 {} · max {}   (STALE after {}, MISS after {})",
                age(a.p50_ms),
                age(a.p99_ms),
                age(a.max_ms),
                humantime::format_duration(read.stale_after),
                humantime::format_duration(read.max_age)
            ),
        );
        // Each bucket by its upper bound; the last, unbounded one by the bound before it.
        let ms = |d: &Duration| age(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut below = None;
        let mut buckets = Vec::with_capacity(r.age_buckets.len());
        for bucket in &r.age_buckets {
            let count = bucket.count;
            match &bucket.le {
                Some(le) => buckets.push(format!("≤{} {count}", ms(le))),
                None => buckets.push(format!(">{} {count}", below.map_or_else(|| "0s".into(), ms))),
            }
            below = bucket.le.as_ref();
        }
        row("", format!("ages {}", buckets.join(" · ")));
    }
    let q = &r.quarantine;
    if q.total == 0 {
        row("quarantine", "none".into());
    } else {
        row("quarantine", format!("{} groups (their refresh keeps failing; last good snapshot served)", q.total));
        row("", format!("{:>20}  {:>8}  {:>8}  {:>8}  last error", "group", "failures", "since", "retry at"));
        for (group, h) in &q.first {
            let retry = h.retry_at().map_or_else(|| "-".to_owned(), |t| t.format("%H:%M:%S").to_string());
            let since = h.since().format("%H:%M:%S").to_string();
            row("", format!("{group:>20}  {:>8}  {since:>8}  {retry:>8}  {}", h.failures, h.error));
        }
        let shown = q.first.len() as u64;
        if q.total > shown {
            row("", format!("… and {} more", q.total - shown));
        }
    }
    out
}

/// `--stale`: the groups older than `stale_after`, oldest first.
async fn stale(ctx: &Context, cache: &Cache, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let read = &ctx.settings.read;
    let now = Utc::now();
    let oldest = cache.oldest_groups(read.stale_after, now, args.limit as usize).await?;
    let (total, groups) = (oldest.total, oldest.first);
    let policy = read.freshness();
    let rows: Vec<(i64, u64, &str)> = groups
        .iter()
        .map(|g| {
            let age_ms = u64::try_from(now.timestamp_micros().saturating_sub(g.version) / 1_000).unwrap_or(0);
            let status = if Duration::from_millis(age_ms) > policy.max_age { "MISS" } else { "STALE" };
            (g.group, age_ms, status)
        })
        .collect();
    if args.json {
        let list: Vec<_> = groups
            .iter()
            .zip(&rows)
            .map(|(g, (_, age_ms, status))| json!({ "group": g.group, "version": g.version, "age_ms": age_ms, "status": status }))
            .collect();
        let stale_after_ms = u64::try_from(read.stale_after.as_millis()).unwrap_or(u64::MAX);
        println!("{}", json!({ "stale_after_ms": stale_after_ms, "total": total, "groups": list }));
        return Ok(ExitCode::SUCCESS);
    }
    if total == 0 {
        println!("no group is older than stale_after ({})", humantime::format_duration(read.stale_after));
        return Ok(ExitCode::SUCCESS);
    }
    println!("{total} groups older than stale_after ({}), oldest first:", humantime::format_duration(read.stale_after));
    println!("{:>20}  {:>10}  status", "group", "age");
    for (group, age_ms, status) in &rows {
        println!("{group:>20}  {:>10}  {status}", age(*age_ms));
    }
    if total > rows.len() as u64 {
        println!("… and {} more (raise --limit)", total - rows.len() as u64);
    }
    Ok(ExitCode::SUCCESS)
}
