//! `ranq-bench soak`: many full ticks in a row through the real producer tick (in process), the
//! queue and the worker processes; reports each tick's time and whether Redis memory and worker
//! RSS stay flat.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::Utc;
use ranq_producer::{Producer, TickOutcome};
use ranq_queue::Queue;
use serde::Serialize;
use tokio::process::Child;

use crate::cli::SoakArgs;
use crate::sandbox::{Lab, Sandbox, Watch, in_sandbox, redis_used_memory, rss_of};

/// Longest wait for one tick's groups to be refreshed before the bench gives up.
const TICK_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Serialize)]
struct SoakReport {
    groups: u32,
    members: u32,
    workers: u32,
    ticks: u32,
    seed_seconds: f64,
    tick_seconds: Vec<f64>,
    first_tick_seconds: f64,
    median_tick_seconds: f64,
    max_tick_seconds: f64,
    median_groups_per_second: f64,
    redis_used_memory_after_first_tick: u64,
    redis_used_memory_at_end: u64,
    redis_memory_growth_percent: f64,
    worker_rss_kib_after_first_tick: Vec<u64>,
    worker_rss_kib_at_end: Vec<u64>,
}

pub async fn soak(lab: &Lab, args: &SoakArgs) -> anyhow::Result<ExitCode> {
    in_sandbox(lab, args.json.as_deref(), async |sandbox| run_soak(lab, args, sandbox).await, print_soak).await
}

async fn run_soak(lab: &Lab, args: &SoakArgs, sandbox: &Sandbox) -> anyhow::Result<SoakReport> {
    let started = Instant::now();
    let source = sandbox.seeded_source(args.groups, args.members, 2).await?;
    let seed_seconds = started.elapsed().as_secs_f64();
    eprintln!("seeded {} groups × {} members in {seed_seconds:.1}s", args.groups, args.members);

    let mut workers = Vec::new();
    for _ in 0..args.workers {
        workers.push(sandbox.spawn_role(lab, &["worker"])?);
    }
    let outcome = tick_repeatedly(lab, args, sandbox, source, &mut workers).await;
    ranq_launch::stop_all(&mut workers, lab.settings.shutdown_timeout).await;
    let Soaked { tick_seconds, memory, rss } = outcome?;
    let mut sorted = tick_seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let growth =
        if memory.first > 0 { (memory.last as f64 - memory.first as f64) * 100.0 / memory.first as f64 } else { 0.0 };
    Ok(SoakReport {
        groups: args.groups,
        members: args.members,
        workers: args.workers,
        ticks: args.ticks,
        seed_seconds,
        first_tick_seconds: tick_seconds.first().copied().unwrap_or_default(),
        median_tick_seconds: median,
        max_tick_seconds: sorted.last().copied().unwrap_or_default(),
        median_groups_per_second: if median > 0.0 { f64::from(args.groups) / median } else { 0.0 },
        tick_seconds,
        redis_used_memory_after_first_tick: memory.first,
        redis_used_memory_at_end: memory.last,
        redis_memory_growth_percent: growth,
        worker_rss_kib_after_first_tick: rss.first,
        worker_rss_kib_at_end: rss.last,
    })
}

/// A figure read after the first tick and after the last.
#[derive(Debug, Clone, Default)]
struct FirstAndLast<T> {
    first: T,
    last: T,
}

/// What the ticks measured.
struct Soaked {
    tick_seconds: Vec<f64>,
    /// Redis `used_memory`, bytes.
    memory: FirstAndLast<u64>,
    /// Worker RSS, KiB, one per worker.
    rss: FirstAndLast<Vec<u64>>,
}

/// Runs `args.ticks` full ticks back to back, each timed from its start until every group holds a
/// snapshot read after that start.
async fn tick_repeatedly(
    lab: &Lab,
    args: &SoakArgs,
    sandbox: &Sandbox,
    source: ranq_db::Source,
    workers: &mut [Child],
) -> anyhow::Result<Soaked> {
    let cache = sandbox.cache.clone();
    let queue = Queue::new(cache.redis(), cache.keys(), &lab.settings.worker);
    let mut settings = lab.settings.producer.clone();
    settings.mode = ranq_runtime::ProducerMode::All;
    settings.backlog_wait = TICK_TIMEOUT;
    settings.lease_ttl = Duration::from_secs(3600);
    let producer = Producer::new(source, cache.clone(), queue, settings, "bench")?;
    producer.keep_lease().await?;

    let bar = indicatif::ProgressBar::new(u64::from(args.ticks)).with_style(
        indicatif::ProgressStyle::with_template("soak {bar:30} {pos}/{len} ticks  last {msg}  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let base = Utc::now();
    let mut tick_seconds = Vec::with_capacity(args.ticks as usize);
    let (mut memory, mut rss) = (FirstAndLast::default(), FirstAndLast::default());
    for i in 0..args.ticks {
        let start = Utc::now();
        let scheduled = base + chrono::Duration::seconds(i64::from(i));
        match producer.tick(scheduled).await? {
            TickOutcome::Enqueued { deferred: 0, .. } => {}
            other => anyhow::bail!("tick {i} did not enqueue every group: {other:?}"),
        }
        let mut watch = Watch { workers: &mut *workers, timeout: TICK_TIMEOUT, progress: None };
        watch.refreshed(&cache, u64::from(args.groups), start.timestamp_micros()).await?;
        let seconds = (Utc::now() - start).to_std().unwrap_or_default().as_secs_f64();
        tick_seconds.push(seconds);
        bar.set_message(format!("{seconds:.2}s"));
        bar.inc(1);
        (memory.last, rss.last) = (redis_used_memory(&sandbox.redis).await?, rss_of(workers));
        if i == 0 {
            (memory.first, rss.first) = (memory.last, rss.last.clone());
        }
    }
    bar.finish_and_clear();
    Ok(Soaked { tick_seconds, memory, rss })
}

fn print_soak(r: &SoakReport) {
    println!("soak: {} groups × {} members, {} workers, {} ticks", r.groups, r.members, r.workers, r.ticks);
    println!("  seed                 {:>10.1} s", r.seed_seconds);
    println!("  first tick           {:>10.2} s", r.first_tick_seconds);
    println!("  median tick          {:>10.2} s  ({:.0} groups/s)", r.median_tick_seconds, r.median_groups_per_second);
    println!("  slowest tick         {:>10.2} s", r.max_tick_seconds);
    println!(
        "  redis used_memory    {:>10} B after tick 1, {} B at the end ({:+.1} %)",
        r.redis_used_memory_after_first_tick, r.redis_used_memory_at_end, r.redis_memory_growth_percent
    );
    println!(
        "  worker RSS (KiB)     {:?} after tick 1, {:?} at the end",
        r.worker_rss_kib_after_first_tick, r.worker_rss_kib_at_end
    );
}
