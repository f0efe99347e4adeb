//! `ranq bench`: measurements that print figures (and write JSON), never pass/fail on time.
//!
//! Each bench works in a fresh Postgres schema and a fresh Redis namespace, both removed when it
//! ends, so it can run against a shared database and Redis without touching anyone's data.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ranq_cache::Cache;
use ranq_db::{SeedOptions, Source};
use ranq_producer::{Lease, Producer, TickOutcome};
use ranq_queue::{Queue, QueueOptions};
use serde::Serialize;
use tokio::process::{Child, Command};

use crate::cli::SoakArgs;
use crate::context::{Context, UsageError};

mod chaos;
mod compare;
mod read;
mod refresh;

pub use chaos::chaos;
pub use compare::{Skew, compare};
pub use read::read;
pub use refresh::refresh;

/// Longest wait for one tick's groups to be refreshed before the bench gives up.
const TICK_TIMEOUT: Duration = Duration::from_secs(600);

/// A bench's private corner of the database and of Redis.
struct Sandbox {
    admin: Source,
    schema: String,
    database_url: String,
    namespace: String,
    cache: Cache,
}

impl Sandbox {
    async fn create(ctx: &Context) -> anyhow::Result<Self> {
        let url = ctx.database_url()?;
        if !url.starts_with("postgres") {
            return Err(UsageError(
                "ranq bench needs a Postgres DATABASE_URL (it works in a schema of its own)".into(),
            )
            .into());
        }
        let tag = format!("{}_{}", std::process::id(), Utc::now().timestamp_millis());
        let schema = format!("ranq_bench_{tag}");
        let admin = Source::connect(url, 1).await?;
        if let ranq_db::Pool::Postgres(pool) = admin.pool() {
            sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(pool).await?;
        }
        let separator = if url.contains('?') { '&' } else { '?' };
        let database_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
        let namespace = format!("{}-bench-{tag}", ctx.settings.namespace);
        let cache = Cache::connect(&ctx.settings.redis_url, &namespace).await?;
        Ok(Self { admin, schema, database_url, namespace, cache })
    }

    async fn remove(self) {
        let _ = unlink_matching(&self.cache, &self.cache.keys().all_pattern()).await;
        if let ranq_db::Pool::Postgres(pool) = self.admin.pool() {
            let _ = sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema)).execute(pool).await;
        }
        self.admin.close().await;
    }
}

/// Deletes every key matching `pattern` (SCAN, then UNLINK page by page).
async fn unlink_matching(cache: &Cache, pattern: &str) -> anyhow::Result<()> {
    let mut conn = cache.connection();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK").arg(&keys).query_async::<()>(&mut conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// `ranq bench noop-worker` (hidden): the no-op consumer the refresh bench measures its ceiling with.
pub async fn noop_worker(ctx: &Context, stock_leases: bool) -> anyhow::Result<ExitCode> {
    let cache = ctx.cache().await?;
    let shutdown = super::fleet::shutdown_on_signals();
    ranq_worker::run_noop(&ctx.settings, cache.connection(), cache.keys(), stock_leases, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERMs every child, then waits for each (killing it if it outlives `grace`).
async fn stop_all(children: &mut [Child], grace: Duration) {
    for child in children.iter() {
        if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    for child in children.iter_mut() {
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
}

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

/// `ranq bench soak`: many full ticks in a row through the real producer tick, queue and worker
/// processes; reports each tick's time and whether Redis memory and worker RSS stay flat.
pub async fn soak(ctx: &Context, args: &SoakArgs) -> anyhow::Result<ExitCode> {
    in_sandbox(ctx, args.json.as_deref(), async |sandbox| run_soak(ctx, args, sandbox).await, print_soak).await
}

/// Runs `bench` in a sandbox of its own, removes the sandbox whatever happened, then prints the
/// report and, when asked, writes it as JSON to `json`.
async fn in_sandbox<R: serde::Serialize>(
    ctx: &Context,
    json: Option<&std::path::Path>,
    bench: impl AsyncFnOnce(&Sandbox) -> anyhow::Result<R>,
    print: fn(&R),
) -> anyhow::Result<ExitCode> {
    let sandbox = Sandbox::create(ctx).await?;
    let result = bench(&sandbox).await;
    sandbox.remove().await;
    let report = result?;
    print(&report);
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_soak(ctx: &Context, args: &SoakArgs, sandbox: &Sandbox) -> anyhow::Result<SoakReport> {
    let source = Source::connect(&sandbox.database_url, 2).await?;
    source.migrate().await?;
    let started = Instant::now();
    let options = SeedOptions { groups: args.groups, members: args.members, seed: 42, replace: false };
    super::admin::seed_with_progress(&source, options).await?;
    let seed_seconds = started.elapsed().as_secs_f64();
    eprintln!("seeded {} groups × {} members in {seed_seconds:.1}s", args.groups, args.members);

    let mut workers = Vec::new();
    for _ in 0..args.workers {
        workers.push(spawn_role(&["worker"], &sandbox.database_url, &ctx.settings.redis_url, &sandbox.namespace)?);
    }
    let outcome = tick_repeatedly(ctx, args, sandbox, source, &mut workers).await;
    stop_all(&mut workers, ctx.settings.shutdown_timeout).await;
    let (tick_seconds, memory, rss) = outcome?;
    let mut sorted = tick_seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let growth = if memory.0 > 0 { (memory.1 as f64 - memory.0 as f64) * 100.0 / memory.0 as f64 } else { 0.0 };
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
        redis_used_memory_after_first_tick: memory.0,
        redis_used_memory_at_end: memory.1,
        redis_memory_growth_percent: growth,
        worker_rss_kib_after_first_tick: rss.0,
        worker_rss_kib_at_end: rss.1,
    })
}

type Measured = (Vec<f64>, (u64, u64), (Vec<u64>, Vec<u64>));

/// Runs `args.ticks` full ticks back to back, each timed from its start until every group holds a
/// snapshot read after that start.
async fn tick_repeatedly(
    ctx: &Context,
    args: &SoakArgs,
    sandbox: &Sandbox,
    source: Source,
    workers: &mut [Child],
) -> anyhow::Result<Measured> {
    let cache = sandbox.cache.clone();
    let queue = Queue::new(cache.connection(), cache.keys(), &QueueOptions::default());
    let lease = Lease::new(cache.connection(), cache.keys().clone(), "bench".into(), Duration::from_secs(3600));
    let mut settings = ctx.settings.producer.clone();
    settings.mode = ranq_runtime::ProducerMode::All;
    settings.backlog_wait = TICK_TIMEOUT;
    let producer = Producer::new(source, cache.clone(), queue, settings, lease)?;
    producer.keep_lease().await?;

    let bar = ProgressBar::new(u64::from(args.ticks)).with_style(
        ProgressStyle::with_template("soak {bar:30} {pos}/{len} ticks  last {msg}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let base = Utc::now();
    let mut times = Vec::with_capacity(args.ticks as usize);
    let (mut memory, mut rss) = ((0, 0), (Vec::new(), Vec::new()));
    for i in 0..args.ticks {
        let start = Utc::now();
        let scheduled = base + chrono::Duration::seconds(i64::from(i));
        match producer.tick(scheduled).await? {
            TickOutcome::Enqueued { deferred: 0, .. } => {}
            other => anyhow::bail!("tick {i} did not enqueue every group: {other:?}"),
        }
        wait_until_refreshed(&cache, u64::from(args.groups), start.timestamp_micros(), workers, TICK_TIMEOUT, None)
            .await?;
        let seconds = (Utc::now() - start).to_std().unwrap_or_default().as_secs_f64();
        times.push(seconds);
        bar.set_message(format!("{seconds:.2}s"));
        bar.inc(1);
        let now = (redis_used_memory(&cache).await?, worker_rss(workers));
        if i == 0 {
            (memory.0, rss.0) = now.clone();
        }
        (memory.1, rss.1) = now;
    }
    bar.finish_and_clear();
    Ok((times, memory, rss))
}

/// Waits until `groups` snapshots have a version read after `since` (µs), failing if a worker
/// dies or `timeout` passes.
async fn wait_until_refreshed(
    cache: &Cache,
    groups: u64,
    since: i64,
    workers: &mut [Child],
    timeout: Duration,
    progress: Option<&ProgressBar>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut conn = cache.connection();
    loop {
        let done: u64 =
            redis::cmd("ZCOUNT").arg(cache.keys().index()).arg(since).arg("+inf").query_async(&mut conn).await?;
        if let Some(bar) = progress {
            bar.set_position(done);
        }
        if done >= groups {
            return Ok(());
        }
        ensure_alive(workers)?;
        anyhow::ensure!(Instant::now() < deadline, "not refreshed within {timeout:?}: {done} of {groups}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Fails as soon as one of the bench's worker processes has exited: waiting on would only end at
/// the phase's timeout.
fn ensure_alive(workers: &mut [Child]) -> anyhow::Result<()> {
    for worker in workers.iter_mut() {
        if let Some(status) = worker.try_wait()? {
            anyhow::bail!("a worker died during the benchmark ({status}); run one by hand to see why");
        }
    }
    Ok(())
}

async fn redis_used_memory(cache: &Cache) -> anyhow::Result<u64> {
    let mut conn = cache.connection();
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut conn).await?;
    Ok(info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0))
}

fn worker_rss(workers: &[Child]) -> Vec<u64> {
    workers.iter().filter_map(Child::id).map(rss_kib).collect()
}

/// A process's resident set size in KiB, from /proc (0 if it cannot be read).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")).map(str::to_owned))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// Starts `ranq <args>` on the bench's database and namespace (other settings are inherited
/// from this process's environment, so `RANQ_WORKER__*` tunes the bench's workers too).
fn spawn_role(args: &[&str], database_url: &str, redis_url: &str, namespace: &str) -> anyhow::Result<Child> {
    let exe: PathBuf = std::env::current_exe()?;
    Command::new(exe)
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url)
        .env("RANQ_NAMESPACE", namespace)
        .env("RANQ_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start `ranq {}`: {e}", args.join(" ")))
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
