//! `ranq-bench read --overload`: the public read tier past what it can serve, and under a scan
//! over many distinct groups, as a real `ranq serve` process (so its memory is its own).
//!
//! **Overload.** A server's capacity is its bound on requests in flight over the time one takes;
//! on loopback a request takes tens of microseconds and no load generator on the same machine
//! could offer ten times what it answers. So the server reads a Redis a few milliseconds away
//! (through a proxy that delays every byte, `ranq_faults::FaultProxy::with_latency`), with no
//! in-memory copies and a small `read.max_in_flight`: capacity is then some hundreds of requests
//! a second (about 700 here), as for a small tier whose Redis is across a network. Measured: the capacity
//! (closed loop, as many connections as the bound), the unloaded latency (open loop at half of
//! it), then an open loop at ten times the capacity: the admitted requests' latency, the share
//! refused at once with 503 and `Retry-After`, and the server's peak RSS.
//!
//! **Scan.** A second server, Redis direct and in-memory copies on, bounded by
//! `read.local_max_bytes`, reads `--scan-groups` distinct group ids once each (every fiftieth
//! cached, the rest misses) — a crawler, or an attacker walking ids. Its RSS is sampled
//! throughout; the same scan is run with the bound at 1 GiB to show what it holds back.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use ranq_cache::{Cache, Write};
use ranq_core::Snapshot;
use ranq_faults::FaultProxy;
use ranq_launch::Launcher;
use serde::Serialize;
use tokio::process::Child;

use crate::cli::ReadBenchArgs;
use crate::load::{Load, PLAIN, closed_loop, finish, open_loop, realistic_top, scratch_cache, summarise};
use crate::sandbox::{Lab, rss_kib, spawn_quiet};

/// Added to every byte each way between the overloaded server and Redis: a 5 ms round trip.
const REDIS_LATENCY: Duration = Duration::from_micros(2_500);
/// The overloaded server's `read.max_in_flight`.
const MAX_IN_FLIGHT: u32 = 8;
/// How many times its capacity the overload offers.
const OVERLOAD: f64 = 10.0;
/// Connections of the overload's open loop: enough that each sends only every few ms.
const OVERLOAD_CONNECTIONS: u32 = 256;
/// One group in this many is cached for the scan.
const SCAN_CACHED_EVERY: u64 = 50;
/// Cap on the groups the scan caches (each a top-100 of about 4.6 KB).
const SCAN_CACHED_MAX: u64 = 20_000;
/// The scan server's `read.local_max_bytes`, and the bound of the run it is compared with.
const SCAN_BOUND: &str = "16MiB";
const SCAN_UNBOUNDED: &str = "1GiB";
/// Concurrent requests of the scan.
const SCAN_CONNECTIONS: u32 = 32;
/// How often the server's RSS is sampled.
const RSS_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Serialize)]
struct OverloadReport {
    redis_round_trip_ms: f64,
    max_in_flight: u32,
    seconds: u64,
    capacity: Load,
    unloaded: Load,
    offered_per_second: f64,
    overloaded: Load,
    /// Admitted p99 under overload over unloaded p99.
    p99_ratio: f64,
    shed_share: f64,
    rss_kib_idle: u64,
    rss_kib_peak_overloaded: u64,
    scans: Vec<ScanReport>,
}

#[derive(Debug, Serialize)]
struct ScanReport {
    local_max_bytes: &'static str,
    groups: u64,
    cached: u64,
    hits: u64,
    misses: u64,
    errors: u64,
    requests_per_second: f64,
    rss_kib_start: u64,
    rss_kib_peak: u64,
    rss_kib_end: u64,
}

pub async fn overload(lab: &Lab, args: &ReadBenchArgs) -> anyhow::Result<ExitCode> {
    let cache = scratch_cache(lab, "overload").await?;
    let result = run(lab, args, &cache).await;
    finish(&cache, result, print, args.json.as_deref()).await
}

async fn run(lab: &Lab, args: &ReadBenchArgs, cache: &Cache) -> anyhow::Result<OverloadReport> {
    let namespace = cache.keys().namespace();
    let scanned = args.scan_groups;
    let cached = (scanned / SCAN_CACHED_EVERY).clamp(1, SCAN_CACHED_MAX);
    seed(cache, cached).await?;

    let redis_addr = redis_address(&lab.settings.redis_url).await?;
    let proxy = FaultProxy::with_latency(redis_addr, REDIS_LATENCY).await?;
    let far_redis = proxy.wrap(&lab.settings.redis_url).context("REDIS_URL is not a URL")?;
    let launcher = serve_launcher(lab, &far_redis, namespace)
        .var("RANQ_READ__LOCAL_TTL", "0s")
        .var("RANQ_READ__MAX_IN_FLIGHT", MAX_IN_FLIGHT.to_string());
    let (mut server, base) = start(&launcher).await?;
    let outcome = overloaded(args, &mut server, &base).await;
    let _ = server.kill().await;
    let mut report = outcome?;

    for bound in [SCAN_BOUND, SCAN_UNBOUNDED] {
        let launcher = serve_launcher(lab, &lab.settings.redis_url, namespace)
            .var("RANQ_READ__LOCAL_TTL", "10m")
            .var("RANQ_READ__LOCAL_MAX_BYTES", bound);
        let (mut server, base) = start(&launcher).await?;
        let scan = scan(&server, &base, scanned, cached, bound).await;
        let _ = server.kill().await;
        report.scans.push(scan?);
    }
    Ok(report)
}

/// `ranq serve` on `redis_url`, quiet, asking for no refreshes (no worker runs here).
fn serve_launcher(lab: &Lab, redis_url: &str, namespace: &str) -> Launcher {
    Launcher::new(&lab.ranq, None, redis_url, namespace)
        .var("RANQ_LOG_FORMAT", "json")
        .var("RUST_LOG", "error")
        .var("RANQ_READ__ADMIN_LISTEN", "127.0.0.1:0")
        .var("RANQ_READ__ON_MISS", "none")
}

/// Caches `count` top-100s, at every [`SCAN_CACHED_EVERY`]th group id.
async fn seed(cache: &Cache, count: u64) -> anyhow::Result<()> {
    let version = Utc::now().timestamp_micros();
    let entries = realistic_top();
    let bar = ranq_runtime::progress::bar("caching", count, "groups");
    for chunk in (1..=count).collect::<Vec<_>>().chunks(500) {
        let writes: Vec<Write> = chunk
            .iter()
            .map(|&i| {
                let group = i64::try_from(i * SCAN_CACHED_EVERY).unwrap_or(i64::MAX);
                Write::Snapshot(Snapshot::new(group, version, entries.clone()))
            })
            .collect();
        cache.write_batch(&writes).await?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

async fn redis_address(url: &str) -> anyhow::Result<std::net::SocketAddr> {
    let parsed = url::Url::parse(url).context("REDIS_URL is not a URL")?;
    let host = parsed.host_str().context("REDIS_URL names no host")?;
    let port = parsed.port().unwrap_or(6379);
    tokio::net::lookup_host((host, port)).await?.next().with_context(|| format!("{host} does not resolve"))
}

/// Starts `ranq serve` on a free port and waits until it is ready.
async fn start(launcher: &Launcher) -> anyhow::Result<(Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let server = spawn_quiet(launcher, &["serve", "--listen", &listen])?;
    let base = format!("http://{listen}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await
            && response.status().is_success()
        {
            return Ok((server, base));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("`ranq serve` was not ready within 30 s")
}

async fn overloaded(args: &ReadBenchArgs, server: &mut Child, base: &str) -> anyhow::Result<OverloadReport> {
    let pid = server.id().context("the server exited")?;
    let url = format!("{base}/v1/groups/{SCAN_CACHED_EVERY}/top");
    let client = reqwest::Client::builder().pool_max_idle_per_host(OVERLOAD_CONNECTIONS as usize * 2).build()?;
    let seconds = Duration::from_secs(args.seconds);
    let rss_kib_idle = rss_kib(pid);

    let spinner = ranq_runtime::progress::spinner("capacity: as many connections as requests may be in flight…".into());
    let (lanes, took) = closed_loop(&client, &url, PLAIN, MAX_IN_FLIGHT, seconds).await?;
    let capacity = summarise(lanes, took);
    spinner.set_message("unloaded: half the capacity…");
    let rate = capacity.requests_per_second;
    anyhow::ensure!(rate > 0.0, "the server answered nothing at capacity");
    let (lanes, took) = open_loop(&client, &url, PLAIN, rate / 2.0, MAX_IN_FLIGHT, seconds).await?;
    let unloaded = summarise(lanes, took);
    spinner.set_message(format!("overloaded: {OVERLOAD}× the capacity…"));
    let peak = Peak::watch(pid);
    let offered = rate * OVERLOAD;
    let (lanes, took) = open_loop(&client, &url, PLAIN, offered, OVERLOAD_CONNECTIONS, seconds).await?;
    let overloaded = summarise(lanes, took);
    let rss_kib_peak_overloaded = peak.stop();
    spinner.finish_and_clear();
    anyhow::ensure!(server.try_wait()?.is_none(), "the server exited under overload");

    let total = overloaded.requests + overloaded.shed + overloaded.errors;
    Ok(OverloadReport {
        redis_round_trip_ms: REDIS_LATENCY.as_secs_f64() * 2_000.0,
        max_in_flight: MAX_IN_FLIGHT,
        seconds: args.seconds,
        p99_ratio: if unloaded.p99_ms > 0.0 { overloaded.p99_ms / unloaded.p99_ms } else { 0.0 },
        shed_share: if total > 0 { overloaded.shed as f64 / total as f64 } else { 0.0 },
        capacity,
        unloaded,
        offered_per_second: offered,
        overloaded,
        rss_kib_idle,
        rss_kib_peak_overloaded,
        scans: Vec::new(),
    })
}

/// Reads groups `1..=groups` once each, [`SCAN_CONNECTIONS`] at a time.
async fn scan(server: &Child, base: &str, groups: u64, cached: u64, bound: &'static str) -> anyhow::Result<ScanReport> {
    let pid = server.id().context("the server exited")?;
    let rss_kib_start = rss_kib(pid);
    let client = reqwest::Client::builder().pool_max_idle_per_host(SCAN_CONNECTIONS as usize * 2).build()?;
    let next = Arc::new(AtomicU64::new(1));
    let bar = ranq_runtime::progress::bar(&format!("scan, local_max_bytes {bound}"), groups, "groups");
    let peak = Peak::watch(pid);
    let started = Instant::now();
    let lanes = (0..SCAN_CONNECTIONS).map(|_| {
        let (client, next, base, bar) = (client.clone(), next.clone(), base.to_owned(), bar.clone());
        tokio::spawn(async move {
            let (mut hits, mut misses, mut errors) = (0u64, 0u64, 0u64);
            loop {
                let group = next.fetch_add(1, Ordering::Relaxed);
                if group > groups {
                    break;
                }
                // Browsers ask for compression: the copies then hold compressed bodies too.
                let accept = if group % 2 == 0 { "gzip, deflate, br" } else { PLAIN };
                let url = format!("{base}/v1/groups/{group}/top");
                match client.get(&url).header("accept-encoding", accept).send().await {
                    Ok(r) if r.status().is_success() => match r.bytes().await {
                        Ok(_) => hits += 1,
                        Err(_) => errors += 1,
                    },
                    Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => misses += 1,
                    _ => errors += 1,
                }
                if group % 1_000 == 0 {
                    bar.inc(1_000);
                }
            }
            (hits, misses, errors)
        })
    });
    let counts = futures::future::try_join_all(lanes).await?;
    let took = started.elapsed();
    let rss_kib_peak = peak.stop();
    bar.finish_and_clear();
    let (hits, misses, errors) = counts.into_iter().fold((0, 0, 0), |a, c| (a.0 + c.0, a.1 + c.1, a.2 + c.2));
    Ok(ScanReport {
        local_max_bytes: bound,
        groups,
        cached,
        hits,
        misses,
        errors,
        requests_per_second: groups as f64 / took.as_secs_f64().max(f64::EPSILON),
        rss_kib_start,
        rss_kib_peak,
        rss_kib_end: rss_kib(pid),
    })
}

/// The highest RSS of a process, sampled every [`RSS_EVERY`] until [`stop`](Self::stop).
struct Peak {
    peak: Arc<AtomicU64>,
    sampler: tokio::task::JoinHandle<()>,
}

impl Peak {
    fn watch(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let sampler = tokio::spawn({
            let peak = peak.clone();
            async move {
                loop {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    tokio::time::sleep(RSS_EVERY).await;
                }
            }
        });
        Self { peak, sampler }
    }

    fn stop(self) -> u64 {
        self.sampler.abort();
        self.peak.load(Ordering::Relaxed)
    }
}

fn print(r: &OverloadReport) {
    println!(
        "read --overload: Redis {:.0} ms away, read.max_in_flight = {}, {} s per measurement",
        r.redis_round_trip_ms, r.max_in_flight, r.seconds
    );
    println!("  {:<38} {:>10} {:>9} {:>9} {:>9} {:>9}", "", "req/s", "p50 ms", "p99 ms", "503", "errors");
    let line = |label: &str, l: &Load| {
        println!(
            "  {label:<38} {:>10.0} {:>9.2} {:>9.2} {:>9} {:>9}",
            l.requests_per_second, l.p50_ms, l.p99_ms, l.shed, l.errors
        );
    };
    line("capacity (closed loop)", &r.capacity);
    line("unloaded (half the capacity)", &r.unloaded);
    line(&format!("overloaded ({:.0} req/s offered)", r.offered_per_second), &r.overloaded);
    println!(
        "  admitted p99 = {:.2}× unloaded; {:.1} % refused with 503 + Retry-After; RSS {} KiB idle, {} KiB peak",
        r.p99_ratio,
        r.shed_share * 100.0,
        r.rss_kib_idle,
        r.rss_kib_peak_overloaded
    );
    for s in &r.scans {
        println!(
            "  scan of {} distinct groups ({} cached), local_max_bytes {}: {:.0} req/s, {} hits, {} misses, {} errors; \
             RSS {} KiB at start, {} KiB peak, {} KiB at the end",
            s.groups,
            s.cached,
            s.local_max_bytes,
            s.requests_per_second,
            s.hits,
            s.misses,
            s.errors,
            s.rss_kib_start,
            s.rss_kib_peak,
            s.rss_kib_end
        );
    }
}
