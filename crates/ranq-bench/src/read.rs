//! `ranq-bench read`: the read API serving a cached top-100 under load, beside a minimal server
//! (axum, one route, the same bytes from memory) that stands for a static file. Both run in this
//! process on loopback, behind the same load generator, so the ratio between them is the read
//! path's own cost: Redis round trip, snapshot decoding, classification and serialisation.
//!
//! Four measurements, the two servers taking one-second turns so that noise on a shared machine
//! falls on both alike: each at full load (closed loop, `--connections` requests in flight)
//! for requests per second, then each at half of its own full-load rate (open loop: a request
//! sent late because the one before it was slow counts its latency from when it was due, so a
//! stall cannot hide itself) for percentiles. Then the read API at full load once per
//! `Accept-Encoding` (identity, gzip, br), for what compression costs in requests per second and
//! saves in bytes per answer.
//!
//! The load generator is `load`'s, shared with `ranq-bench read --overload` (`overload`).

use std::process::ExitCode;
use std::time::Duration;

use axum::body::Bytes;
use chrono::Utc;
use ranq_cache::{Cache, Write};
use ranq_core::Snapshot;
use ranq_runtime::Shutdown;
use ranq_runtime::settings::OnMiss;
use serde::Serialize;

use crate::cli::ReadBenchArgs;
use crate::load::{Lane, Load, PLAIN, closed_loop, finish, open_loop, realistic_top, scratch_cache, summarise};
use crate::sandbox::Lab;

/// The group the bench caches and reads.
const GROUP: i64 = 1;

/// The read API at full load with one `Accept-Encoding`.
#[derive(Debug, Serialize)]
struct CodingLoad {
    accept_encoding: &'static str,
    bytes_per_answer: usize,
    full_load: Load,
}

/// What the coding measurements ask for, in turn.
const CODINGS: [&str; 3] = ["identity", "gzip", "br"];

#[derive(Debug, Serialize)]
struct ReadReport {
    body_bytes: usize,
    connections: u32,
    seconds: u64,
    api_full_load: Load,
    static_full_load: Load,
    api_half_load: Load,
    static_half_load: Load,
    api_share_of_static: f64,
    codings: Vec<CodingLoad>,
}

pub async fn read(lab: &Lab, args: &ReadBenchArgs) -> anyhow::Result<ExitCode> {
    let cache = scratch_cache(lab, "read").await?;
    let shutdown = Shutdown::new();
    let result = run(lab, args, &cache, &shutdown).await;
    shutdown.trigger();
    finish(&cache, result, print, args.json.as_deref()).await
}

async fn run(lab: &Lab, args: &ReadBenchArgs, cache: &Cache, shutdown: &Shutdown) -> anyhow::Result<ReadReport> {
    let entries = realistic_top();
    cache.write_batch(&[Write::Snapshot(Snapshot::new(GROUP, Utc::now().timestamp_micros(), entries))]).await?;

    let mut settings = lab.settings.clone();
    settings.read.listen = "127.0.0.1:0".into();
    settings.read.admin_listen = "127.0.0.1:0".into();
    settings.read.on_miss = OnMiss::None;
    let api = ranq_read::Server::bind(&settings, cache.clone()).await?;
    let api_url = format!("http://{}/v1/groups/{GROUP}/top", api.local_addr()?);
    tokio::spawn(api.run_until(shutdown.clone()));

    let client = reqwest::Client::builder().pool_max_idle_per_host(args.connections as usize * 2).build()?;
    let body = client.get(&api_url).send().await?.error_for_status()?.bytes().await?;
    let static_url = serve_static(body.clone(), shutdown.clone()).await?;

    let connections = args.connections;
    let urls = [api_url.as_str(), static_url.as_str()];
    let targets = ["read API", "static"];
    let [api_full, static_full] = measure(
        "full load",
        &targets,
        alternating(args.seconds, |t| closed_loop(&client, urls[t], PLAIN, connections, SLICE)),
    )
    .await?;
    let rates = [api_full.requests_per_second / 2.0, static_full.requests_per_second / 2.0];
    let [api_half, static_half] = measure(
        "half load",
        &targets,
        alternating(args.seconds, |t| open_loop(&client, urls[t], PLAIN, rates[t], connections, SLICE)),
    )
    .await?;
    let loads = measure(
        "full load",
        &CODINGS,
        alternating(args.seconds, |t| closed_loop(&client, &api_url, CODINGS[t], connections, SLICE)),
    )
    .await?;
    let mut codings = Vec::new();
    for (accept_encoding, full_load) in CODINGS.into_iter().zip(loads) {
        let answer = client.get(&api_url).header("accept-encoding", accept_encoding).send().await?;
        let bytes_per_answer = answer.error_for_status()?.bytes().await?.len();
        codings.push(CodingLoad { accept_encoding, bytes_per_answer, full_load });
    }
    let share = if static_full.requests_per_second > 0.0 {
        api_full.requests_per_second / static_full.requests_per_second
    } else {
        0.0
    };
    Ok(ReadReport {
        body_bytes: body.len(),
        connections,
        seconds: args.seconds,
        api_full_load: api_full,
        static_full_load: static_full,
        api_half_load: api_half,
        static_half_load: static_half,
        api_share_of_static: share,
        codings,
    })
}

/// The stand-in for a static file: one route answering `body` from memory.
async fn serve_static(body: Bytes, shutdown: Shutdown) -> anyhow::Result<String> {
    use axum::http::header::CONTENT_TYPE;
    let app = axum::Router::new().route(
        "/static",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([(CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/static", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.wait().await }).await;
    });
    Ok(url)
}

/// One turn of a target in [`alternating`].
const SLICE: Duration = Duration::from_secs(1);

async fn measure<const N: usize>(
    name: &str,
    targets: &[&str; N],
    loads: impl std::future::Future<Output = anyhow::Result<[Load; N]>>,
) -> anyhow::Result<[Load; N]> {
    let spinner = ranq_runtime::progress::spinner(format!("{name}: {}, in turns…", targets.join(", ")));
    let loads = loads.await?;
    spinner.finish_and_clear();
    for (target, load) in targets.iter().zip(&loads) {
        eprintln!("{target:<9} {name:<10} {:>9.0} req/s  p99 {:>6.2} ms", load.requests_per_second, load.p99_ms);
    }
    Ok(loads)
}

/// Measures `N` targets in turns of [`SLICE`], `seconds` turns each: on a shared machine, a
/// noisy moment then falls on all alike instead of on whichever happened to run during it.
async fn alternating<const N: usize, F, Fut>(seconds: u64, mut slice: F) -> anyhow::Result<[Load; N]>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(Vec<Lane>, Duration)>>,
{
    let mut lanes: [Vec<Lane>; N] = std::array::from_fn(|_| Vec::new());
    let mut elapsed = [Duration::ZERO; N];
    for _ in 0..seconds {
        for target in 0..N {
            let (more, took) = slice(target).await?;
            lanes[target].extend(more);
            elapsed[target] += took;
        }
    }
    let mut lanes = lanes.into_iter();
    Ok(std::array::from_fn(|target| summarise(lanes.next().unwrap_or_default(), elapsed[target])))
}

fn print(r: &ReadReport) {
    println!(
        "read: a cached top-100 ({} bytes), {} connections, {} s per measurement, loopback",
        r.body_bytes, r.connections, r.seconds
    );
    println!("  {:<34} {:>10} {:>9} {:>9} {:>9}", "", "req/s", "p50 ms", "p99 ms", "errors");
    let line = |label: &str, l: &Load| {
        println!("  {label:<34} {:>10.0} {:>9.2} {:>9.2} {:>9}", l.requests_per_second, l.p50_ms, l.p99_ms, l.errors);
    };
    line("read API, full load", &r.api_full_load);
    line("static bytes, full load", &r.static_full_load);
    line("read API, half of its full load", &r.api_half_load);
    line("static bytes, half of its full load", &r.static_half_load);
    println!("  read API = {:.0} % of the static figure", r.api_share_of_static * 100.0);
    println!("  {:<34} {:>10} {:>9} {:>9}", "read API, full load, by coding", "req/s", "p99 ms", "bytes");
    for c in &r.codings {
        let label = format!("Accept-Encoding: {}", c.accept_encoding);
        println!(
            "  {label:<34} {:>10.0} {:>9.2} {:>9}",
            c.full_load.requests_per_second, c.full_load.p99_ms, c.bytes_per_answer
        );
    }
}
