//! `ranq-bench refresh`: one full refresh of every group through the real queue and worker
//! processes, beside the figures that say what it is worth, all in the same run:
//!
//! * **no-op ceiling** — the same number of jobs through the same queue configuration and number
//!   of worker processes, each job acked without work: what one job per group can reach at best;
//! * **naive** — one query and one `SET` per group, no queue: what a simple script does;
//! * **floor** — batched SQL and pipelined `SET`s with the workers' batch size and parallelism, no
//!   queue: what the database and Redis allow;
//! * **fenced, no queue** — ranq's own `Refresher` (batched SQL, fenced pipeline) without the queue,
//!   which separates the fence's cost from the queue's.
//!
//! The naive and floor phases write plain `SET`s to keys of their own (`<ns>:naive:{g}`,
//! `<ns>:floor:{g}`), never around the fence to ranq's snapshot keys; every phase that uses ranq's
//! keys runs in a namespace of its own below the sandbox's.

use std::time::{Duration, Instant};

use chrono::Utc;
use ranq_cache::Cache;
use ranq_core::{GroupId, Reason, RefreshJob, Snapshot};
use ranq_db::Source;
use ranq_queue::{Backpressure, Queue};
use ranq_redis::Redis;
use ranq_worker::Refresher;
use serde::Serialize;
use tokio::process::Child;

use crate::cli::RefreshBenchArgs;
use crate::sandbox::{Lab, Sandbox, Watch, in_sandbox, spawn_quiet};

/// Longest wait for one phase before the bench gives up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);

/// One measured way of refreshing every group.
#[derive(Debug, Clone, Serialize)]
struct Phase {
    seconds: f64,
    groups_per_second: f64,
}

impl Phase {
    fn new(groups: u32, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self { seconds, groups_per_second: if seconds > 0.0 { f64::from(groups) / seconds } else { 0.0 } }
    }
}

#[derive(Debug, Serialize)]
struct RefreshReport {
    groups: u32,
    members: u32,
    workers: u32,
    batch_size: usize,
    concurrency: usize,
    seed_seconds: f64,
    /// (a) no-op jobs through the same queue configuration.
    noop_ceiling: Phase,
    /// (b) one query and one SET per group, no queue.
    naive: Phase,
    /// (c) batched SQL and pipelined SETs, no queue.
    floor: Phase,
    /// ranq's Refresher (batched SQL, fenced pipeline), no queue.
    fenced_no_queue: Phase,
    /// The real thing: every group through the queue and the worker processes.
    refresh: Phase,
    refresh_share_of_noop_ceiling: f64,
    refresh_times_naive: f64,
    refresh_share_of_floor: f64,
}

pub async fn refresh(lab: &Lab, args: &RefreshBenchArgs) -> anyhow::Result<std::process::ExitCode> {
    in_sandbox(lab, args.json.as_deref(), async |sandbox| run(lab, args, sandbox).await, print).await
}

async fn run(lab: &Lab, args: &RefreshBenchArgs, sandbox: &Sandbox) -> anyhow::Result<RefreshReport> {
    let ws = &lab.settings.worker;
    let started = Instant::now();
    let source = sandbox.seeded_source(args.groups, args.members, ws.db_pool.max(args.workers)).await?;
    let seed_seconds = started.elapsed().as_secs_f64();
    eprintln!("seeded {} groups × {} members in {seed_seconds:.1}s", args.groups, args.members);
    let groups = source.group_ids().await?;
    // Warm the database's cache so the first phase is not the only one reading from disk.
    for chunk in groups.chunks(ws.batch_size.max(1)) {
        source.top_n(chunk).await?;
    }

    let (redis, ns) = (&sandbox.redis, sandbox.namespace.as_str());
    let naive = timed("naive", groups.len(), naive(&source, redis, &format!("{ns}:naive"), &groups)).await?;
    let floor_keys = format!("{ns}:floor");
    let floor =
        timed("floor", groups.len(), floor(&source, redis, &floor_keys, &groups, ws.batch_size, args.workers)).await?;
    let fenced_cache = sandbox.cache_in("fenced");
    let fenced =
        timed("fenced", groups.len(), fenced(&source, &fenced_cache, &groups, ws.batch_size, args.workers)).await?;
    let noop = through_queue(lab, sandbox, &groups, args.workers, Role::Noop).await?;
    let real = through_queue(lab, sandbox, &groups, args.workers, Role::Worker).await?;
    source.close().await;

    let (n, ratio) = (args.groups, |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 });
    let refresh = Phase::new(n, real);
    Ok(RefreshReport {
        groups: n,
        members: args.members,
        workers: args.workers,
        batch_size: ws.batch_size,
        concurrency: ws.concurrency,
        seed_seconds,
        refresh_share_of_noop_ceiling: ratio(refresh.groups_per_second, Phase::new(n, noop).groups_per_second),
        refresh_times_naive: ratio(refresh.groups_per_second, Phase::new(n, naive).groups_per_second),
        refresh_share_of_floor: ratio(refresh.groups_per_second, Phase::new(n, floor).groups_per_second),
        noop_ceiling: Phase::new(n, noop),
        naive: Phase::new(n, naive),
        floor: Phase::new(n, floor),
        fenced_no_queue: Phase::new(n, fenced),
        refresh,
    })
}

/// Runs one in-process phase behind a spinner and returns its time.
async fn timed(
    name: &str,
    groups: usize,
    phase: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<Duration> {
    let spinner = ranq_runtime::progress::spinner(format!("{name}: refreshing {groups} groups"));
    let started = Instant::now();
    phase.await?;
    let elapsed = started.elapsed();
    spinner.finish_and_clear();
    eprintln!("{name:<8} {:>8.2} s", elapsed.as_secs_f64());
    Ok(elapsed)
}

/// (b): what a simple script does — one query, one `SET` (to `<prefix>:{g}`), group after group.
async fn naive(source: &Source, redis: &Redis, prefix: &str, groups: &[GroupId]) -> anyhow::Result<()> {
    let mut conn = redis.conn();
    for &group in groups {
        let batch = source.top_n(&[group]).await?;
        for top in batch.groups {
            let snapshot = Snapshot::new(top.group, batch.version, top.entries.unwrap_or_default());
            redis::cmd("SET")
                .arg(format!("{prefix}:{{{}}}", top.group))
                .arg(snapshot.to_json())
                .query_async::<()>(&mut conn)
                .await?;
        }
    }
    Ok(())
}

/// (c): the batched SQL and a pipeline of plain `SET`s (to `<prefix>:{g}`), in `streams` parallel
/// loops.
async fn floor(
    source: &Source,
    redis: &Redis,
    prefix: &str,
    groups: &[GroupId],
    batch: usize,
    streams: u32,
) -> anyhow::Result<()> {
    in_streams(groups, batch, streams, |chunk| {
        let (source, mut conn) = (source.clone(), redis.conn());
        async move {
            let read = source.top_n(&chunk).await?;
            let mut pipe = redis::pipe();
            for top in read.groups {
                let snapshot = Snapshot::new(top.group, read.version, top.entries.unwrap_or_default());
                pipe.cmd("SET").arg(format!("{prefix}:{{{}}}", top.group)).arg(snapshot.to_json()).ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
            Ok(())
        }
    })
    .await
}

/// ranq's `Refresher` without the queue, in `streams` parallel loops.
async fn fenced(source: &Source, cache: &Cache, groups: &[GroupId], batch: usize, streams: u32) -> anyhow::Result<()> {
    let refresher = Refresher::new(source.clone(), cache.clone());
    in_streams(groups, batch, streams, |chunk| {
        let refresher = refresher.clone();
        async move {
            refresher.refresh(&chunk).await?;
            Ok(())
        }
    })
    .await
}

/// Splits `groups` into batches and runs them through `streams` concurrent loops.
async fn in_streams<F, Fut>(groups: &[GroupId], batch: usize, streams: u32, work: F) -> anyhow::Result<()>
where
    F: Fn(Vec<GroupId>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let batches: Vec<Vec<GroupId>> = groups.chunks(batch.max(1)).map(<[GroupId]>::to_vec).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let lanes = (0..streams.max(1)).map(|_| async {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(chunk) = batches.get(i) else { return anyhow::Ok(()) };
            work(chunk.clone()).await?;
        }
    });
    futures::future::try_join_all(lanes).await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Noop,
    Worker,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Self::Noop => "no-op",
            Self::Worker => "refresh",
        }
    }
}

/// (a) and the real refresh: one job per group through the queue, `workers` processes consuming,
/// timed from the first push until every job is done; each in a namespace of its own.
async fn through_queue(
    lab: &Lab,
    sandbox: &Sandbox,
    groups: &[GroupId],
    workers: u32,
    role: Role,
) -> anyhow::Result<Duration> {
    let cache = sandbox.cache_in(role.name());
    let queue = Queue::new(cache.redis(), cache.keys(), &lab.settings.worker);
    let launcher = sandbox.launcher(lab, cache.keys().namespace());
    let (launcher, args): (_, &[&str]) = match role {
        // The no-op consumer is this lab's own subcommand.
        Role::Noop => (launcher.with_exe(std::env::current_exe()?), &["noop-worker"]),
        Role::Worker => (launcher, &["worker"]),
    };
    let mut children: Vec<Child> = Vec::new();
    for _ in 0..workers {
        children.push(spawn_quiet(&launcher, args)?);
    }
    let measured = async {
        wait_for_workers(&queue, u64::from(workers)).await?;
        let name = role.name();
        let bar = ranq_runtime::progress::bar(&format!("{name:<8}"), groups.len() as u64, "jobs");
        let jobs: Vec<RefreshJob> = groups.iter().map(|&g| RefreshJob::new(g, Reason::Manual)).collect();
        let pressure = Backpressure::of(&lab.settings.producer).waiting(PHASE_TIMEOUT);
        let since = Utc::now().timestamp_micros();
        let started = Instant::now();
        let enqueue = queue.enqueue(&jobs, &pressure);
        let total = groups.len() as u64;
        let mut watch = Watch { workers: &mut children, timeout: PHASE_TIMEOUT, progress: Some(&bar) };
        let done = async {
            match role {
                // No-op workers do not vacuum, so the queue counts the jobs they finished.
                Role::Noop => {
                    watch.until("no-op jobs done", total, || async { Ok(queue.stats().await?.finished) }).await
                }
                Role::Worker => watch.refreshed(&cache, total, since).await,
            }
        };
        let (pushed, done) = tokio::join!(enqueue, done);
        anyhow::ensure!(pushed?.deferred == 0, "the queue did not take every job in time");
        done?;
        let elapsed = started.elapsed();
        bar.finish_and_clear();
        eprintln!("{name:<8} {:>8.2} s", elapsed.as_secs_f64());
        anyhow::Ok(elapsed)
    }
    .await;
    ranq_launch::stop_all(&mut children, lab.settings.shutdown_timeout).await;
    measured
}

async fn wait_for_workers(queue: &Queue, workers: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue.stats().await?.workers_alive < workers {
        anyhow::ensure!(Instant::now() < deadline, "the benchmark's workers did not start within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn print(r: &RefreshReport) {
    println!(
        "refresh: {} groups × {} members, {} worker processes, batch size {}, concurrency {}",
        r.groups, r.members, r.workers, r.batch_size, r.concurrency
    );
    let line = |label: &str, p: &Phase| {
        println!("  {label:<44} {:>8.2} s  {:>9.0} groups/s", p.seconds, p.groups_per_second);
    };
    line("(a) no-op jobs through the queue (ceiling)", &r.noop_ceiling);
    line("(b) naive: 1 query + 1 SET per group", &r.naive);
    line("(c) floor: batched SQL + pipelined SET", &r.floor);
    line("    fenced writes, no queue (Refresher)", &r.fenced_no_queue);
    line("refresh through queue and workers", &r.refresh);
    println!(
        "  refresh = {:.0} % of the no-op ceiling, {:.1}× naive, {:.0} % of the floor",
        r.refresh_share_of_noop_ceiling * 100.0,
        r.refresh_times_naive,
        r.refresh_share_of_floor * 100.0
    );
}
