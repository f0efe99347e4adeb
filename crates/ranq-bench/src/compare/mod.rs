//! `ranq-bench compare`: the three architectures of the design discussion on the same data, the
//! same read workload and the same Postgres and Redis, one after the other:
//!
//! 1. **sharded lock** — `--servers` tasks race for a per-group lock every period
//!    ([`contenders::ShardedLock`]);
//! 2. **queue (ranq)** — the real thing: a producer tick every period and `--servers` real
//!    `ranq worker` processes;
//! 3. **on demand + lock**, and the same with **stale-while-revalidate**
//!    ([`contenders::OnDemand`]).
//!
//! Time is compressed: ranq's one-minute tick becomes `--period`, and the freshness limits keep
//! their ratio to it (STALE after 1.5 periods, MISS after 10, as 90 s and 10 min are to a minute).
//! Each architecture is measured over `--duration` after a warm-up (the pre-computing ones first
//! fill the cache, as a running fleet has; on-demand starts empty, as it does after a deploy).
//! Redis commands are the server's own count over the window, so nothing else should use that
//! Redis meanwhile.

mod chart;
mod contenders;
mod markdown;
mod workload;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use ranq_core::GroupId;
use ranq_db::Source;
use ranq_faults::FaultProxy;
use ranq_producer::{Producer, TickOutcome};
use ranq_queue::Queue;
use ranq_redis::Redis;
use ranq_runtime::{Shutdown, UsageError};
use serde::Serialize;

use self::contenders::{Counted, Counters, OnDemand, RanqReader, ShardedLock};
use self::workload::ReadFigures;
use crate::cli::CompareArgs;
use crate::sandbox::{Lab, Sandbox, in_sandbox, spawn_quiet};

/// Longest warm-up (first full refresh) before a run gives up.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(120);

const SVG_DRAWS_ONE: &str = "--svg draws one comparison and a --db-latency sweep makes one per latency: write the sweep's --markdown table \
     instead, or give one latency";

#[derive(Debug, Serialize, serde::Deserialize)]
struct CompareReport {
    groups: u32,
    members: u32,
    servers: u32,
    period_seconds: f64,
    duration_seconds: f64,
    read_rate: u32,
    read_skew: String,
    stale_after_seconds: f64,
    max_age_seconds: f64,
    /// Latency added to every database query (0 for reports written before the sweep existed).
    #[serde(default)]
    db_latency_ms: f64,
    machine: String,
    architectures: Vec<Architecture>,
}

/// What a run of `compare` reports: one comparison, or one per `--db-latency` value.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Report {
    Sweep { sweep: Vec<CompareReport> },
    One(CompareReport),
}

/// One architecture's figures over its measured window; rates are per minute.
#[derive(Debug, Serialize, serde::Deserialize)]
struct Architecture {
    name: String,
    db_queries_per_minute: f64,
    redis_commands_per_minute: f64,
    lock_attempts_per_minute: f64,
    lock_conflicts_per_minute: f64,
    /// Most database computations of one group at once (`None`: not observable from the bench).
    max_concurrent_db_per_group: Option<u64>,
    /// Most readers waiting on one group's computation at once.
    max_readers_piled_on_a_miss: Option<u64>,
    reads: ReadFigures,
}

pub async fn compare(lab: &Lab, args: &CompareArgs) -> anyhow::Result<std::process::ExitCode> {
    if let Some(saved) = &args.replot {
        let text =
            std::fs::read_to_string(saved).map_err(|e| UsageError(format!("--replot {}: {e}", saved.display())))?;
        let report: Report = serde_json::from_str(&text)
            .map_err(|e| UsageError(format!("--replot {}: not a bench compare report: {e}", saved.display())))?;
        draw(&report, args)?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    check_outputs(args)?;
    in_sandbox(lab, args.json.as_deref(), async |sandbox| run(lab, args, sandbox).await, print).await
}

/// Refuses, before minutes of measuring, what could only fail at the end: a chart of a sweep, a
/// table printed among the run's own output, a latency given twice, an output path that cannot
/// be written.
fn check_outputs(args: &CompareArgs) -> Result<(), UsageError> {
    if args.svg.is_some() && args.db_latency.len() > 1 {
        return Err(UsageError(SVG_DRAWS_ONE.into()));
    }
    if args.markdown.as_ref().is_some_and(|p| p.as_os_str() == "-") {
        return Err(UsageError(
            "--markdown - prints a saved report's table (with --replot); a run writes it to a file: --markdown PATH"
                .into(),
        ));
    }
    let mut seen = args.db_latency.clone();
    seen.sort();
    if let Some(twice) = seen.windows(2).find(|w| w[0] == w[1]) {
        return Err(UsageError(format!(
            "--db-latency lists {} twice: give each latency once",
            humantime::format_duration(twice[0])
        )));
    }
    // Opened without truncating: a run that fails later leaves an earlier report as it was.
    for path in [&args.svg, &args.markdown, &args.json].into_iter().flatten() {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| UsageError(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// What every run shares.
struct Setup<'a> {
    lab: &'a Lab,
    args: &'a CompareArgs,
    sandbox: &'a Sandbox,
    groups: Arc<Vec<GroupId>>,
    stale_after: Duration,
    max_age: Duration,
    /// The database as this run reaches it: directly, or through the latency proxy.
    database_url: String,
    /// Names this run's keys apart from the other latencies' runs (`run1`).
    tag: String,
}

async fn run(lab: &Lab, args: &CompareArgs, sandbox: &Sandbox) -> anyhow::Result<Report> {
    let source = sandbox.seeded_source(args.groups, args.members, 2).await?;
    let groups = Arc::new(source.group_ids().await?);
    source.close().await;
    eprintln!(
        "comparing on {} groups × {} members, {} servers, a refresh every {}, {} reads/s ({}), {} each",
        args.groups,
        args.members,
        args.servers,
        humantime::format_duration(args.period),
        args.read_rate,
        args.read_skew,
        humantime::format_duration(args.duration)
    );
    let mut runs = Vec::new();
    for (run, &latency) in args.db_latency.iter().enumerate() {
        // Held for the whole run: dropping it closes the architectures' connections.
        let proxy = if latency.is_zero() {
            None
        } else {
            Some(FaultProxy::with_latency(sandbox.database_addr().await?, latency / 2).await?)
        };
        let database_url = match &proxy {
            Some(proxy) => proxy
                .wrap(&sandbox.database_url)
                .ok_or_else(|| anyhow::anyhow!("the database URL names no host to put the latency proxy before"))?,
            None => sandbox.database_url.clone(),
        };
        // Runs never share keys, so none starts warm from another's snapshots.
        let tag = format!("run{run}");
        if args.db_latency.len() > 1 {
            eprintln!("database latency {}:", humantime::format_duration(latency));
        }
        let setup = Setup {
            lab,
            args,
            sandbox,
            groups: groups.clone(),
            stale_after: args.period.mul_f64(1.5),
            max_age: args.period * 10,
            database_url,
            tag,
        };
        let architectures = vec![
            sharded_lock(&setup).await?,
            queue(&setup).await?,
            on_demand(&setup, false).await?,
            on_demand(&setup, true).await?,
        ];
        runs.push(CompareReport {
            groups: args.groups,
            members: args.members,
            servers: args.servers,
            period_seconds: args.period.as_secs_f64(),
            duration_seconds: args.duration.as_secs_f64(),
            read_rate: args.read_rate,
            read_skew: args.read_skew.to_string(),
            stale_after_seconds: setup.stale_after.as_secs_f64(),
            max_age_seconds: setup.max_age.as_secs_f64(),
            db_latency_ms: latency.as_secs_f64() * 1_000.0,
            machine: machine(),
            architectures,
        });
    }
    let report = match runs.len() {
        1 => Report::One(runs.remove(0)),
        _ => Report::Sweep { sweep: runs },
    };
    draw(&report, args)?;
    Ok(report)
}

/// Writes the chart and the table that `--svg` and `--markdown` ask for.
fn draw(report: &Report, args: &CompareArgs) -> anyhow::Result<()> {
    if let Some(svg) = &args.svg {
        let Report::One(one) = report else { return Err(UsageError(SVG_DRAWS_ONE.into()).into()) };
        chart::draw(one, svg)?;
        eprintln!("wrote {}", svg.display());
    }
    if let Some(path) = &args.markdown {
        let table = match report {
            Report::One(one) => markdown::table(one, args.lang),
            Report::Sweep { sweep } => markdown::sweep_table(sweep, args.lang),
        };
        if path.as_os_str() == "-" {
            print!("{table}");
        } else {
            std::fs::write(path, table).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// Redis's own count of commands processed (server-wide).
async fn redis_commands(redis: &Redis) -> anyhow::Result<u64> {
    Ok(redis.info("stats").await?.get("total_commands_processed").and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Counts taken at the start and the end of a measured window, turned into rates.
struct Window {
    started: Instant,
    redis: u64,
    counted: Counted,
}

/// A window's figures, per minute.
struct Rates {
    db_queries: f64,
    redis_commands: f64,
    lock_attempts: f64,
    lock_conflicts: f64,
}

impl Window {
    async fn open(redis: &Redis, counters: &Counters) -> anyhow::Result<Self> {
        Ok(Self { started: Instant::now(), redis: redis_commands(redis).await?, counted: counters.now() })
    }

    /// The rates since the window opened; `extra_db` counts database queries made where the
    /// counters cannot see them (worker processes).
    async fn close(self, redis: &Redis, counters: &Counters, extra_db: u64) -> anyhow::Result<Rates> {
        let minutes = self.started.elapsed().as_secs_f64() / 60.0;
        let commands = redis_commands(redis).await?.saturating_sub(self.redis);
        let d = counters.now().since(&self.counted);
        let per_minute = |n: u64| n as f64 / minutes;
        Ok(Rates {
            db_queries: per_minute(d.db_queries + extra_db),
            redis_commands: per_minute(commands),
            lock_attempts: per_minute(d.lock_attempts),
            lock_conflicts: per_minute(d.lock_conflicts),
        })
    }
}

async fn reads<R: workload::Reader>(setup: &Setup<'_>, reader: Arc<R>) -> ReadFigures {
    let a = setup.args;
    workload::run(reader, &setup.groups, a.read_rate, a.read_skew, a.duration).await
}

/// The keys of one contender's run, below the sandbox's namespace, so runs never see each other's.
fn run_prefix(setup: &Setup<'_>, run: &str) -> String {
    format!("{}:{}:{run}", setup.sandbox.namespace, setup.tag)
}

/// Architecture 1, `--servers` tasks, each with its own database pool.
async fn sharded_lock(setup: &Setup<'_>) -> anyhow::Result<Architecture> {
    eprintln!("1. sharded lock: warming up");
    let redis = &setup.sandbox.redis;
    let prefix = run_prefix(setup, "sharded");
    let counters = Arc::new(Counters::default());
    let shutdown = Shutdown::new();
    let epoch = Instant::now();
    let mut servers = tokio::task::JoinSet::new();
    for server in 0..setup.args.servers as usize {
        let contender = ShardedLock {
            server,
            source: Source::connect(&setup.database_url, 2).await?,
            redis: redis.clone(),
            prefix: prefix.clone(),
            groups: setup.groups.clone(),
            period: setup.args.period,
            counters: counters.clone(),
        };
        servers.spawn(contender.run(epoch, shutdown.clone()));
    }
    let total = setup.groups.len() as u64;
    let warm = wait_for(|| async { Ok(counters.groups_written.load(Ordering::Relaxed) >= total) }).await;
    let measured = async {
        warm?;
        eprintln!("1. sharded lock: measuring");
        let window = Window::open(redis, &counters).await?;
        let reader = Arc::new(ShardedLock::reader(redis.clone(), &prefix, setup.stale_after, setup.max_age));
        let reads = reads(setup, reader).await;
        let rates = window.close(redis, &counters, 0).await?;
        anyhow::Ok(Architecture {
            name: "1. sharded lock".into(),
            db_queries_per_minute: rates.db_queries,
            redis_commands_per_minute: rates.redis_commands,
            lock_attempts_per_minute: rates.lock_attempts,
            lock_conflicts_per_minute: rates.lock_conflicts,
            // Not measured: the lock admits one server per group and round, but a server more
            // than a round behind may take a round's lock again.
            max_concurrent_db_per_group: None,
            max_readers_piled_on_a_miss: None,
            reads,
        })
    }
    .await;
    shutdown.trigger();
    while let Some(done) = servers.join_next().await {
        done??;
    }
    measured
}

/// Architecture 2: ranq — a producer ticking every period (in this process, on the real tick
/// code) and `--servers` real worker processes.
async fn queue(setup: &Setup<'_>) -> anyhow::Result<Architecture> {
    eprintln!("2. queue (ranq): warming up");
    let lab = setup.lab;
    let cache = setup.sandbox.cache_in(&format!("{}:queue", setup.tag));
    let launcher = setup.sandbox.launcher(lab, cache.keys().namespace()).var("DATABASE_URL", &setup.database_url);
    let ports: Vec<u16> = (0..setup.args.servers).map(|_| ranq_launch::free_port()).collect::<Result<_, _>>()?;
    let mut workers = Vec::new();
    for port in &ports {
        let listen = format!("127.0.0.1:{port}");
        workers.push(spawn_quiet(&launcher, &["worker", "--metrics-listen", &listen])?);
    }
    let source = Source::connect(&setup.database_url, 2).await?;
    let queue = Queue::new(cache.redis(), cache.keys(), &lab.settings.worker);
    let mut settings = lab.settings.producer.clone();
    settings.mode = ranq_runtime::ProducerMode::All;
    settings.lease_ttl = Duration::from_secs(3600);
    let producer = Arc::new(Producer::new(source, cache.clone(), queue, settings, "bench")?);
    producer.keep_lease().await?;
    let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let shutdown = Shutdown::new();
    let ticker = tokio::spawn(tick_every(producer, setup.args.period, ticks.clone(), shutdown.clone()));
    let http = reqwest::Client::new();
    let total = setup.groups.len() as u64;
    let measured = async {
        wait_for(|| async { Ok(cache.cached_groups().await?.len() as u64 >= total) }).await?;
        // Every worker up, not only those that took the first jobs: their counts are read next.
        wait_for(|| async { Ok(batches(&http, &ports).await.is_ok()) }).await?;
        eprintln!("2. queue (ranq): measuring");
        let counters = Counters::default();
        let (ticks_before, batches_before) = (ticks.load(Ordering::Relaxed), batches(&http, &ports).await?);
        let window = Window::open(cache.redis(), &counters).await?;
        let reader =
            Arc::new(RanqReader { cache: cache.clone(), stale_after: setup.stale_after, max_age: setup.max_age });
        let reads = reads(setup, reader).await;
        // One SQL statement per worker batch, and one group listing per tick.
        let queries = batches(&http, &ports).await?.saturating_sub(batches_before)
            + ticks.load(Ordering::Relaxed).saturating_sub(ticks_before);
        let rates = window.close(cache.redis(), &counters, queries).await?;
        anyhow::Ok(Architecture {
            name: "2. queue (ranq)".into(),
            db_queries_per_minute: rates.db_queries,
            redis_commands_per_minute: rates.redis_commands,
            lock_attempts_per_minute: 0.0,
            lock_conflicts_per_minute: 0.0,
            max_concurrent_db_per_group: None,
            max_readers_piled_on_a_miss: None,
            reads,
        })
    }
    .await;
    shutdown.trigger();
    let ticked = ticker.await;
    ranq_launch::stop_all(&mut workers, lab.settings.shutdown_timeout).await;
    ticked??;
    measured
}

/// Ticks `producer` every `period` until shutdown, counting the ticks it enqueued.
async fn tick_every(
    producer: Arc<Producer>,
    period: Duration,
    ticks: Arc<std::sync::atomic::AtomicU64>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let base = Utc::now();
    let mut every = tokio::time::interval(period);
    for i in 0i64.. {
        tokio::select! {
            () = shutdown.wait() => break,
            _ = every.tick() => {}
        }
        if let TickOutcome::Enqueued { .. } = producer.tick(base + chrono::Duration::seconds(i)).await? {
            ticks.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// The worker processes' batch counts (`ranq_refresh_batch_size_count`), summed.
async fn batches(http: &reqwest::Client, ports: &[u16]) -> anyhow::Result<u64> {
    let mut sum = 0;
    for port in ports {
        let text = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await?.text().await?;
        sum += text
            .lines()
            .find_map(|l| l.strip_prefix("ranq_refresh_batch_size_count "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
    }
    Ok(sum)
}

/// Architecture 3, with or without stale-while-revalidate; starts with an empty cache.
async fn on_demand(setup: &Setup<'_>, swr: bool) -> anyhow::Result<Architecture> {
    let name = if swr { "3b. on demand + lock + SWR" } else { "3a. on demand + lock" };
    eprintln!("{name}: measuring");
    let redis = &setup.sandbox.redis;
    let prefix = run_prefix(setup, if swr { "swr" } else { "ondemand" });
    let counters = Arc::new(Counters::default());
    // As many connections as ranq's worker processes hold between them.
    let pool = (setup.args.servers * setup.lab.settings.worker.db_pool).max(2);
    let source = Source::connect(&setup.database_url, pool).await?;
    let reader = Arc::new(OnDemand::new(
        source.clone(),
        redis.clone(),
        prefix,
        setup.args.period,
        swr,
        setup.max_age,
        counters.clone(),
    ));
    let window = Window::open(redis, &counters).await?;
    let reads = reads(setup, reader.clone()).await;
    let rates = window.close(redis, &counters, 0).await?;
    // Refreshes behind stale answers finish before the pool closes and the sandbox is removed.
    reader.background_done().await;
    source.close().await;
    Ok(Architecture {
        name: name.into(),
        db_queries_per_minute: rates.db_queries,
        redis_commands_per_minute: rates.redis_commands,
        lock_attempts_per_minute: rates.lock_attempts,
        lock_conflicts_per_minute: rates.lock_conflicts,
        max_concurrent_db_per_group: Some(counters.max_concurrent_db.load(Ordering::Relaxed)),
        max_readers_piled_on_a_miss: Some(counters.max_piled_readers.load(Ordering::Relaxed)),
        reads,
    })
}

/// Polls `done` every 50 ms until it holds, for at most [`WARM_UP_TIMEOUT`].
async fn wait_for<F, Fut>(mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + WARM_UP_TIMEOUT;
    while !done().await? {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the architecture was not warmed up (cache filled, every process answering) within {WARM_UP_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// CPU model and count, for the report's provenance.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!("{cores} × {cpu}, {}", std::env::consts::OS)
}

fn print(report: &Report) {
    match report {
        Report::One(one) => print_one(one),
        Report::Sweep { sweep } => sweep.iter().for_each(print_one),
    }
}

fn print_one(r: &CompareReport) {
    if r.db_latency_ms > 0.0 {
        println!("database latency: {} added to every round trip", markdown::millis(r.db_latency_ms));
    }
    println!(
        "compare: {} groups × {} members, {} servers, refresh period {:.0}s (STALE after {:.0}s, MISS after {:.0}s), {} reads/s {}, {:.0}s each",
        r.groups,
        r.members,
        r.servers,
        r.period_seconds,
        r.stale_after_seconds,
        r.max_age_seconds,
        r.read_rate,
        r.read_skew,
        r.duration_seconds
    );
    println!("machine: {}", r.machine);
    let opt = |v: Option<u64>| v.map_or_else(|| "–".to_owned(), |v| v.to_string());
    println!(
        "{:<28} {:>9} {:>10} {:>9} {:>9} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6} {:>8} {:>8} {:>7} {:>7} {:>5} {:>5}",
        "architecture",
        "DB q/min",
        "Redis/min",
        "locks/m",
        "confl/m",
        "FRESH",
        "STALE",
        "MISS",
        "p50 ms",
        "p99 ms",
        "cold",
        "cold p50",
        "cold p99",
        "age p50",
        "age p99",
        "db/g",
        "pile"
    );
    for a in &r.architectures {
        let f = &a.reads;
        println!(
            "{:<28} {:>9.0} {:>10.0} {:>9.0} {:>9.0} {:>5.1}% {:>5.1}% {:>5.1}% {:>7.2} {:>7.2} {:>6} {:>8.2} {:>8.2} {:>6.1}s {:>6.1}s {:>5} {:>5}",
            a.name,
            a.db_queries_per_minute,
            a.redis_commands_per_minute,
            a.lock_attempts_per_minute,
            a.lock_conflicts_per_minute,
            f.fresh_share * 100.0,
            f.stale_share * 100.0,
            f.miss_share * 100.0,
            f.latency_p50_ms,
            f.latency_p99_ms,
            f.cold_reads,
            f.cold_latency_p50_ms,
            f.cold_latency_p99_ms,
            f.seen_age_p50_ms as f64 / 1_000.0,
            f.seen_age_p99_ms as f64 / 1_000.0,
            opt(a.max_concurrent_db_per_group),
            opt(a.max_readers_piled_on_a_miss),
        );
    }
    let dropped: u64 = r.architectures.iter().map(|a| a.reads.dropped + a.reads.errors).sum();
    if dropped > 0 {
        println!("warning: {dropped} reads dropped or failed (the load generator could not keep up); see the JSON");
    }
}
