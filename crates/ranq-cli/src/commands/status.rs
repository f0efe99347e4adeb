//! `ranq status`: the fleet at a glance — producer, queue, workers, freshness, quarantine — as a
//! table, as one JSON object (CONTRACT §6), redrawn every second with `--watch`, or as the list of
//! groups past `stale_after` with `--stale`.
//!
//! Everything comes from Redis in a handful of round trips (counters, the index sorted by
//! version, the quarantine set); the source database is never read, so status answers even when
//! the database is down — which is when an operator needs it most.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ranq_cache::{Cache, FreshnessCounts};
use ranq_producer::{LastTick, LeaderInfo, TickCounters};
use ranq_queue::QueueStats;
use serde_json::{Value, json};

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
    let report = Report::gather(ctx, &cache).await?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.render(&ctx.settings.read));
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
        let frame = match Report::gather(ctx, cache).await {
            Ok(report) if json => format!("{}\n", report.to_json()),
            Ok(report) => report.render(&ctx.settings.read),
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

/// Everything `status` shows, read at one moment.
struct Report {
    namespace: String,
    now: DateTime<Utc>,
    leader: Option<LeaderInfo>,
    last_tick: Option<LastTick>,
    ticks: TickCounters,
    queue: QueueStats,
    groups: FreshnessCounts,
    quarantined: u64,
    quarantine: Vec<(ranq_core::GroupId, ranq_core::GroupHealth)>,
}

impl Report {
    async fn gather(ctx: &Context, cache: &Cache) -> anyhow::Result<Self> {
        let keys = cache.keys().clone();
        let mut conn = cache.connection();
        let now = Utc::now();
        let queue = ctx.queue(cache).stats().await?;
        let ticks = ranq_producer::read_tick_counters(&mut conn, &keys).await?;
        let last_tick = ranq_producer::read_last_tick(&mut conn, &keys).await?;
        let leader = ranq_producer::read_leader(&mut conn, &keys).await?;
        let groups = cache.freshness_counts(&ctx.settings.read.freshness(), now).await?;
        let (quarantined, quarantine) = cache.quarantined(QUARANTINE_SHOWN).await?;
        Ok(Self {
            namespace: keys.namespace().to_owned(),
            now,
            leader,
            last_tick,
            ticks,
            queue,
            groups,
            quarantined,
            quarantine,
        })
    }

    fn to_json(&self) -> Value {
        let f = &self.groups;
        let quarantine: Vec<_> = self
            .quarantine
            .iter()
            .map(|(group, h)| {
                json!({ "group": group, "failures": h.failures, "error": h.error, "since": h.since(), "retry_at": h.retry_at() })
            })
            .collect();
        let ages = f.ages.map(|a| json!({ "p50": a.p50_ms, "p99": a.p99_ms, "max": a.max_ms }));
        json!({
            "leader": self.leader,
            "last_tick": self.last_tick,
            "ticks": self.ticks,
            "queue": { "pending": self.queue.pending, "running": self.queue.running, "dead": self.queue.dead },
            "workers": { "alive": self.queue.workers_alive },
            "groups": {
                "cached": f.cached, "fresh": f.fresh, "stale": f.stale, "expired": f.expired,
                "quarantined": self.quarantined, "age_ms": ages,
            },
            "quarantine": quarantine,
        })
    }

    /// The table, one section per line group, labels in the left column.
    fn render(&self, read: &ranq_runtime::settings::ReadSettings) -> String {
        let mut out = String::new();
        let mut row = |label: &str, text: String| {
            let _ = writeln!(out, "{label:<11}{text}");
        };
        row("ranq", format!("namespace {} · {}", self.namespace, self.now.format("%Y-%m-%d %H:%M:%S UTC")));
        match &self.leader {
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
        match &self.last_tick {
            Some(t) => row("", format!("last tick {} · {} groups enqueued, {} deferred", t.id, t.groups, t.deferred)),
            None => row("", "no tick yet".into()),
        }
        let t = &self.ticks;
        row(
            "",
            format!(
                "ticks {} enqueued · {} duplicates skipped · {} missed",
                t.enqueued, t.duplicates_skipped, t.missed
            ),
        );
        let q = &self.queue;
        row("queue", format!("{} pending · {} running · {} dead", q.pending, q.running, q.dead));
        row("workers", format!("{} alive", q.workers_alive));
        let f = &self.groups;
        row(
            "groups",
            format!(
                "{} cached: {} FRESH · {} STALE · {} MISS (older than max_age)",
                f.cached, f.fresh, f.stale, f.expired
            ),
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
        }
        if self.quarantined == 0 {
            row("quarantine", "none".into());
        } else {
            row(
                "quarantine",
                format!("{} groups (their refresh keeps failing; last good snapshot served)", self.quarantined),
            );
            row("", format!("{:>20}  {:>8}  {:>8}  {:>8}  last error", "group", "failures", "since", "retry at"));
            for (group, h) in &self.quarantine {
                let retry = h.retry_at().map_or_else(|| "-".to_owned(), |t| t.format("%H:%M:%S").to_string());
                let since = h.since().format("%H:%M:%S").to_string();
                row("", format!("{group:>20}  {:>8}  {since:>8}  {retry:>8}  {}", h.failures, h.error));
            }
            let shown = self.quarantine.len() as u64;
            if self.quarantined > shown {
                row("", format!("… and {} more", self.quarantined - shown));
            }
        }
        out
    }
}

/// `--stale`: the groups older than `stale_after`, oldest first.
async fn stale(ctx: &Context, cache: &Cache, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let read = &ctx.settings.read;
    let now = Utc::now();
    let (total, groups) = cache.oldest_groups(read.stale_after, now, args.limit as usize).await?;
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
