//! `ranq-bench chaos`: a real fleet — two producers, workers and the read API, as processes —
//! under a fault every `--every`, for `--duration`, with a reader hammering the API meanwhile.
//! It runs on services of its own, so nothing else is disturbed: a private `redis-server` (which
//! it kills and restarts empty) or, with `--sentinel`, a Sentinel deployment (which it fails
//! over) or, with `--cluster`, a Redis Cluster (whose masters it fails over and kills), and a TCP
//! proxy in front of its Postgres schema (which it cuts).
//!
//! Faults, in turn: a worker SIGKILLed (and started again), the leading producer SIGKILLed (and
//! started again), the leading producer paused (SIGSTOP) past its lease and resumed, Redis killed
//! and restarted empty (on Sentinel: the master failed over; on a cluster: a master failed over,
//! then another SIGKILLed and started again), the database cut off for 10 s. After each, the bench times how long until
//! every group holds a snapshot read after the fault ended; a group that does not within two
//! minutes is lost. Duplicate ticks are counted independently of ranq's own bookkeeping: from the
//! producers' logs, a tick id enqueued by two producers is a duplicate.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ranq_cache::Cache;
use ranq_core::GroupId;
use ranq_faults::FaultProxy;
use ranq_faults::sentinel::Sentinels;
use ranq_launch::{Launcher, RedisCluster, RedisServer};
use ranq_runtime::Shutdown;
use serde::Serialize;
use tokio::process::Child;

use crate::cli::ChaosArgs;
use crate::sandbox::{Lab, Sandbox, in_sandbox, redis_used_memory, rss_of};

/// How long a fault may take to heal before its unrefreshed groups count as lost.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);
/// The producers' lease, short so that failovers happen within a fault's slot.
const LEASE_TTL: Duration = Duration::from_secs(4);
/// How long the database stays cut, and Redis down.
const DB_CUT: Duration = Duration::from_secs(10);
const REDIS_DOWN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
enum Fault {
    WorkerKilled,
    LeaderKilled,
    LeaderPaused,
    RedisRestartedEmpty,
    SentinelFailover,
    ClusterFailover,
    ClusterMasterKilled,
    DatabaseCut,
}

impl Fault {
    /// Every kind, in the order they are injected and reported.
    const ALL: [Self; 8] = [
        Self::WorkerKilled,
        Self::LeaderKilled,
        Self::LeaderPaused,
        Self::RedisRestartedEmpty,
        Self::SentinelFailover,
        Self::ClusterFailover,
        Self::DatabaseCut,
        Self::ClusterMasterKilled,
    ];

    /// Whether the fault can be injected into a fleet on `service`: on Sentinel the master
    /// fails over, and on a cluster a master fails over or dies, where a lone Redis would
    /// restart empty.
    fn applies_to(self, service: &Service) -> bool {
        match self {
            Self::RedisRestartedEmpty => matches!(service, Service::Lone(_)),
            Self::SentinelFailover => matches!(service, Service::Sentinel(_)),
            Self::ClusterFailover | Self::ClusterMasterKilled => matches!(service, Service::Cluster(_)),
            _ => true,
        }
    }
}

/// The Redis the fleet runs on.
enum Service {
    Lone(RedisServer),
    Sentinel(Sentinels),
    Cluster(RedisCluster),
}

impl Service {
    async fn start(args: &ChaosArgs, dir: &std::path::Path) -> anyhow::Result<Self> {
        Ok(if args.sentinel {
            Self::Sentinel(Sentinels::start(dir).await?)
        } else if args.cluster {
            Self::Cluster(tokio::task::spawn_blocking(RedisCluster::start).await??)
        } else {
            Self::Lone(tokio::task::spawn_blocking(RedisServer::start).await??)
        })
    }

    fn url(&self) -> String {
        match self {
            Self::Lone(redis) => redis.url(),
            Self::Sentinel(sentinels) => sentinels.url(),
            Self::Cluster(cluster) => cluster.url(),
        }
    }

    /// The faults that apply to this service, in turn.
    fn faults(&self) -> Vec<Fault> {
        Fault::ALL.into_iter().filter(|f| f.applies_to(self)).collect()
    }
}

#[derive(Debug, Default, Serialize)]
struct PerFault {
    injected: u32,
    max_converge_seconds: f64,
    groups_lost: u64,
}

#[derive(Debug, Serialize)]
struct ChaosReport {
    groups: u32,
    workers: u32,
    duration_seconds: f64,
    faults: HashMap<Fault, PerFault>,
    groups_lost: u64,
    max_converge_seconds: f64,
    duplicate_ticks_executed: u64,
    ticks_enqueued: u64,
    reads: u64,
    /// 503 `cache_unavailable`: the honest answer while Redis is down.
    reads_cache_unavailable: u64,
    /// Any other 5xx: a defect.
    reads_5xx_other: u64,
    reads_unanswered: u64,
    redis_used_memory_start: u64,
    redis_used_memory_end: u64,
    worker_rss_kib_start: Vec<u64>,
    worker_rss_kib_end: Vec<u64>,
}

pub async fn chaos(lab: &Lab, args: &ChaosArgs) -> anyhow::Result<std::process::ExitCode> {
    in_sandbox(lab, args.json.as_deref(), async |sandbox| run(lab, args, sandbox).await, print).await
}

/// The processes under fault: each role as it runs now, with what it takes to start one again.
struct Cast {
    launcher: Launcher,
    logs: PathBuf,
    producers: Vec<Child>,
    workers: Vec<Child>,
    serve: Option<Child>,
    started: u32,
}

impl Cast {
    fn spawn(&mut self, args: &[&str]) -> anyhow::Result<Child> {
        self.started += 1;
        // Producers' lines are kept: the duplicate-tick count reads them.
        let log = std::fs::File::create(self.logs.join(format!("{}-{}.log", args[0], self.started)))?;
        self.launcher
            .tokio_command(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start `ranq {}`: {e}", args.join(" ")))
    }

    fn producer(&mut self) -> anyhow::Result<()> {
        let child = self.spawn(&["producer", "--schedule", "*/2 * * * * *"])?;
        self.producers.push(child);
        Ok(())
    }

    fn worker(&mut self) -> anyhow::Result<()> {
        let child = self.spawn(&["worker"])?;
        self.workers.push(child);
        Ok(())
    }

    async fn stop(&mut self, grace: Duration) {
        let mut all: Vec<Child> =
            self.producers.drain(..).chain(self.workers.drain(..)).chain(self.serve.take()).collect();
        ranq_launch::stop_all(&mut all, grace).await;
    }
}

async fn run(lab: &Lab, args: &ChaosArgs, sandbox: &Sandbox) -> anyhow::Result<ChaosReport> {
    let source = sandbox.seeded_source(args.groups, args.members, 2).await?;
    let groups = source.group_ids().await?;
    source.close().await;

    let logs = std::env::temp_dir().join(format!("{}-logs", sandbox.namespace));
    std::fs::create_dir_all(&logs)?;
    let mut redis = Service::start(args, &logs.join("redis")).await?;
    let upstream = sandbox.database_addr().await?;
    let proxy = FaultProxy::start(upstream).await?;
    let database_url =
        proxy.wrap(&sandbox.database_url).ok_or_else(|| anyhow::anyhow!("the database URL has no host"))?;
    let launcher = Launcher::new(&lab.ranq, Some(&database_url), &redis.url(), &sandbox.namespace)
        .var("RANQ_LOG_FORMAT", "json")
        .var("RANQ_READ__ADMIN_LISTEN", "127.0.0.1:0")
        .var("RANQ_PRODUCER__LEASE_TTL", humantime::format_duration(LEASE_TTL).to_string());
    let mut cast =
        Cast { launcher, logs: logs.clone(), producers: Vec::new(), workers: Vec::new(), serve: None, started: 0 };
    let port = ranq_launch::free_port()?;
    let shutdown = Shutdown::new();
    let outcome = async {
        cast.producer()?;
        cast.producer()?;
        for _ in 0..args.workers {
            cast.worker()?;
        }
        cast.serve = Some(cast.spawn(&["serve", "--listen", &format!("127.0.0.1:{port}")])?);
        let cache = Cache::connect(&redis.url(), &sandbox.namespace).await?;
        converge(&cache, &groups, 0).await?;
        eprintln!("chaos: {} groups cached; a fault every {}", groups.len(), humantime::format_duration(args.every));

        let reads = Reads::default();
        let reader =
            tokio::spawn(reads.clone().hammer(format!("http://127.0.0.1:{port}"), groups.len(), shutdown.clone()));
        let start = Memory::now(&cache, &cast).await;
        let started = Instant::now();
        let faults = fault_in_turn(args, &mut cast, &mut redis, &proxy, &cache, &groups).await?;
        let end = Memory::now(&cache, &cast).await;
        shutdown.trigger();
        let _ = reader.await;
        anyhow::Ok(Measured { faults, reads, start, end, elapsed: started.elapsed() })
    }
    .await;
    // Whatever happened: the reader stops, the fleet stops, the logs go.
    shutdown.trigger();
    cast.stop(lab.settings.shutdown_timeout).await;
    drop(proxy);
    drop(redis);
    let counted = outcome.and_then(|o| Ok((o, ticks_from_logs(&logs)?)));
    let _ = std::fs::remove_dir_all(&logs);
    let (Measured { faults, reads, start, end, elapsed }, ticks) = counted?;
    Ok(ChaosReport {
        groups: args.groups,
        workers: args.workers,
        duration_seconds: elapsed.as_secs_f64(),
        groups_lost: faults.values().map(|f| f.groups_lost).sum(),
        max_converge_seconds: faults.values().map(|f| f.max_converge_seconds).fold(0.0, f64::max),
        faults,
        duplicate_ticks_executed: ticks.duplicates,
        ticks_enqueued: ticks.enqueued,
        reads: reads.total.load(Ordering::Relaxed),
        reads_cache_unavailable: reads.unavailable.load(Ordering::Relaxed),
        reads_5xx_other: reads.server_errors.load(Ordering::Relaxed),
        reads_unanswered: reads.unanswered.load(Ordering::Relaxed),
        redis_used_memory_start: start.redis_bytes,
        redis_used_memory_end: end.redis_bytes,
        worker_rss_kib_start: start.worker_rss_kib,
        worker_rss_kib_end: end.worker_rss_kib,
    })
}

/// What the run measured while faults were injected.
struct Measured {
    faults: HashMap<Fault, PerFault>,
    reads: Reads,
    start: Memory,
    end: Memory,
    elapsed: Duration,
}

/// Redis's memory and the workers' at one moment.
struct Memory {
    redis_bytes: u64,
    worker_rss_kib: Vec<u64>,
}

impl Memory {
    async fn now(cache: &Cache, cast: &Cast) -> Self {
        Self { redis_bytes: redis_used_memory(cache.redis()).await.unwrap_or(0), worker_rss_kib: rss_of(&cast.workers) }
    }
}

/// Injects the faults in turn, one every `--every`, for `--duration` (and every kind at least
/// once, however short the duration), timing each until every group has converged.
async fn fault_in_turn(
    args: &ChaosArgs,
    cast: &mut Cast,
    redis: &mut Service,
    proxy: &FaultProxy,
    cache: &Cache,
    groups: &[GroupId],
) -> anyhow::Result<HashMap<Fault, PerFault>> {
    let mut faults: HashMap<Fault, PerFault> = HashMap::new();
    let started = Instant::now();
    let kinds = redis.faults();
    for i in 0.. {
        if started.elapsed() >= args.duration && i >= kinds.len() {
            break;
        }
        let slot = Instant::now();
        let fault = kinds[i % kinds.len()];
        if inject(fault, cast, redis, proxy, cache).await? {
            let since = Utc::now().timestamp_micros();
            let healed = Instant::now();
            let lost = converge(cache, groups, since).await?;
            let took = healed.elapsed().as_secs_f64();
            eprintln!("chaos: {fault:?} healed in {took:.1}s, {lost} groups lost");
            let entry = faults.entry(fault).or_default();
            entry.injected += 1;
            entry.max_converge_seconds = entry.max_converge_seconds.max(took);
            entry.groups_lost += lost;
        } else {
            eprintln!("chaos: {fault:?} skipped (no producer held the lease)");
        }
        tokio::time::sleep_until((slot + args.every).into()).await;
    }
    Ok(faults)
}

/// Injects one fault and returns once it is over (the process restarted, the service back);
/// `false` when there was nothing to inject it into (no producer held the lease).
async fn inject(
    fault: Fault,
    cast: &mut Cast,
    redis: &mut Service,
    proxy: &FaultProxy,
    cache: &Cache,
) -> anyhow::Result<bool> {
    match fault {
        Fault::WorkerKilled => {
            if !cast.workers.is_empty() {
                let mut victim = cast.workers.remove(0);
                let _ = victim.kill().await;
            }
            cast.worker()?;
        }
        Fault::LeaderKilled => {
            let Some(i) = leader_index(cast, cache).await else { return Ok(false) };
            let mut victim = cast.producers.remove(i);
            let _ = victim.kill().await;
            cast.producer()?;
        }
        Fault::LeaderPaused => {
            let Some(pid) = leader_index(cast, cache).await.and_then(|i| cast.producers[i].id()) else {
                return Ok(false);
            };
            let pid = Pid::from_raw(i32::try_from(pid)?);
            kill(pid, Signal::SIGSTOP)?;
            tokio::time::sleep(LEASE_TTL + Duration::from_secs(2)).await;
            kill(pid, Signal::SIGCONT)?;
        }
        Fault::RedisRestartedEmpty => {
            let Service::Lone(redis) = redis else { return Ok(false) };
            redis.kill();
            tokio::time::sleep(REDIS_DOWN).await;
            tokio::task::block_in_place(|| redis.start_again())?;
        }
        Fault::SentinelFailover => {
            let Service::Sentinel(sentinels) = redis else { return Ok(false) };
            let old = sentinels.failover().await?;
            sentinels.wait_for_new_master(old).await?;
        }
        Fault::ClusterFailover => {
            let Service::Cluster(cluster) = redis else { return Ok(false) };
            tokio::task::block_in_place(|| cluster_failover(cluster, false))?;
        }
        Fault::ClusterMasterKilled => {
            let Service::Cluster(cluster) = redis else { return Ok(false) };
            tokio::task::block_in_place(|| cluster_failover(cluster, true))?;
        }
        Fault::DatabaseCut => {
            proxy.cut();
            tokio::time::sleep(DB_CUT).await;
            proxy.repair();
        }
    }
    Ok(true)
}

/// Hands a master's slots to its replica: asked for (`CLUSTER FAILOVER` on the replica) or, when
/// `kill`, by SIGKILLing the master and starting it again once the replica took over, so that it
/// rejoins as a replica; returns once that replica has synced and every node says the cluster is
/// ok, so that the next fault finds three pairs again. The masters take their turns by port.
fn cluster_failover(cluster: &mut RedisCluster, kill: bool) -> anyhow::Result<()> {
    static TURN: AtomicUsize = AtomicUsize::new(0);
    let mut pairs = cluster.pairs()?;
    pairs.sort_unstable();
    anyhow::ensure!(!pairs.is_empty(), "no master of the cluster has a replica");
    let (master, replica) = pairs[TURN.fetch_add(1, Ordering::Relaxed) % pairs.len()];
    if kill {
        cluster.kill(master);
    } else {
        let answer = RedisCluster::cli(replica, &["CLUSTER", "FAILOVER"])?;
        anyhow::ensure!(answer.trim() == "OK", "CLUSTER FAILOVER on port {replica} answered {}", answer.trim());
    }
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        while !done() {
            anyhow::ensure!(Instant::now() < deadline, "{what} in time");
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::Ok(())
    };
    wait(&format!("the replica on port {replica} was not promoted"), &|| RedisCluster::is_master(replica))?;
    if kill {
        cluster.start_again(master)?;
    }
    wait(&format!("the node on port {master} did not sync as a replica"), &|| {
        RedisCluster::cli(master, &["INFO", "replication"])
            .is_ok_and(|info| info.contains("role:slave") && info.contains("master_link_status:up"))
    })?;
    cluster.wait_until_ok()?;
    Ok(())
}

/// Which of the producers holds the lease (its id ends in `-<pid>-<start ms>`).
async fn leader_index(cast: &Cast, cache: &Cache) -> Option<usize> {
    let leader = cache.ledger().leader().await.ok()??;
    let pid: u32 = leader.id.rsplit('-').nth(1)?.parse().ok()?;
    cast.producers.iter().position(|p| p.id() == Some(pid))
}

/// Waits until every group was refreshed after `since` (µs); returns how many were not by
/// [`CONVERGE_TIMEOUT`]. While Redis comes back, a failed look counts as no progress.
async fn converge(cache: &Cache, groups: &[GroupId], since: i64) -> anyhow::Result<u64> {
    let behind = cache.wait_until_refreshed(groups, since, CONVERGE_TIMEOUT, |_| ControlFlow::Continue(())).await;
    Ok(behind.len() as u64)
}

/// Ticks as the producers' logs tell them.
struct LoggedTicks {
    /// Distinct tick ids enqueued.
    enqueued: u64,
    /// Enqueues of a tick id beyond its first, across all producers.
    duplicates: u64,
}

/// Counts the ticks the producers' logs say they enqueued, and the tick ids enqueued more than
/// once across all of them.
fn ticks_from_logs(dir: &std::path::Path) -> anyhow::Result<LoggedTicks> {
    let mut seen: HashMap<String, u64> = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("producer-")) {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            if event["message"] == "tick enqueued" {
                if let Some(tick) = event["tick"].as_str() {
                    *seen.entry(tick.to_owned()).or_default() += 1;
                }
            }
        }
    }
    let duplicates = seen.values().map(|n| n.saturating_sub(1)).sum();
    Ok(LoggedTicks { enqueued: seen.len() as u64, duplicates })
}

/// The reader: one request every 5 ms to a random group, counting 503s (the cache is down), other
/// server errors, and requests that got no answer at all.
#[derive(Debug, Clone, Default)]
struct Reads {
    total: Arc<AtomicU64>,
    unavailable: Arc<AtomicU64>,
    server_errors: Arc<AtomicU64>,
    unanswered: Arc<AtomicU64>,
}

impl Reads {
    async fn hammer(self, base: String, groups: usize, shutdown: Shutdown) {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        let mut every = tokio::time::interval(Duration::from_millis(5));
        let mut n: usize = 0;
        loop {
            tokio::select! {
                () = shutdown.wait() => return,
                _ = every.tick() => {}
            }
            n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let group = 1 + (n >> 8) % groups.max(1);
            self.total.fetch_add(1, Ordering::Relaxed);
            let counter = match http.get(format!("{base}/v1/groups/{group}/top")).send().await {
                Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => &self.unavailable,
                Ok(r) if r.status().is_server_error() => &self.server_errors,
                Ok(_) => continue,
                Err(_) => &self.unanswered,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn print(r: &ChaosReport) {
    println!(
        "chaos: {} groups, {} workers, {:.0} s, a fault at a time, every group checked after each",
        r.groups, r.workers, r.duration_seconds
    );
    println!("  {:<24} {:>8} {:>14} {:>12}", "fault", "injected", "max converge", "groups lost");
    for fault in Fault::ALL {
        if let Some(f) = r.faults.get(&fault) {
            let name = serde_json::to_value(fault).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            println!("  {name:<24} {:>8} {:>12.1} s {:>12}", f.injected, f.max_converge_seconds, f.groups_lost);
        }
    }
    println!("  groups lost (must be 0)            {}", r.groups_lost);
    println!("  longest time to converge           {:.1} s", r.max_converge_seconds);
    println!("  duplicate ticks executed (must be 0) {} of {} ticks", r.duplicate_ticks_executed, r.ticks_enqueued);
    println!("  reads                              {}", r.reads);
    println!("    503 cache unavailable            {} (while Redis was down)", r.reads_cache_unavailable);
    println!("    other 5xx (must be 0)            {}", r.reads_5xx_other);
    println!("    unanswered                       {}", r.reads_unanswered);
    println!(
        "  redis used_memory                  {} B at the start, {} B at the end",
        r.redis_used_memory_start, r.redis_used_memory_end
    );
    println!(
        "  worker RSS (KiB)                   {:?} at the start, {:?} at the end",
        r.worker_rss_kib_start, r.worker_rss_kib_end
    );
}
