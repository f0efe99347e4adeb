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
//! `--overload` runs the other read bench instead (`overload`); it shares this one's load
//! generator.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use chrono::Utc;
use ranq_cache::{Cache, Write};
use ranq_core::{Entry, Snapshot};
use ranq_runtime::Shutdown;
use ranq_runtime::settings::OnMiss;
use serde::Serialize;

use crate::cli::ReadBenchArgs;
use crate::sandbox::{Lab, write_json};

/// The group the bench caches and reads.
const GROUP: i64 = 1;

/// One measurement. Percentiles are of the requests answered 2xx.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Load {
    pub requests: u64,
    /// 503s `overloaded`: refused by the server's bound on requests in flight.
    pub shed: u64,
    /// Anything else that was not a 2xx: other statuses, connection errors.
    pub errors: u64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

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
    if args.overload {
        return crate::overload::overload(lab, args).await;
    }
    let cache = scratch_cache(lab, "read").await?;
    let shutdown = Shutdown::new();
    let result = run(lab, args, &cache, &shutdown).await;
    shutdown.trigger();
    finish(&cache, result, print, args.json.as_deref()).await
}

/// The read benches need Redis only, so no sandbox schema: a namespace of their own.
pub(crate) async fn scratch_cache(lab: &Lab, bench: &str) -> anyhow::Result<Cache> {
    let namespace =
        format!("{}-bench-{bench}-{}-{}", lab.settings.namespace, std::process::id(), Utc::now().timestamp_millis());
    let redis = ranq_redis::Redis::connect_with(&lab.settings.redis_url, &lab.settings.redis).await?;
    Ok(Cache::new(redis, ranq_core::Keys::new(namespace)))
}

/// Removes the scratch namespace whatever happened, then prints the report and, when asked,
/// writes it as JSON.
pub(crate) async fn finish<R: Serialize>(
    cache: &Cache,
    result: anyhow::Result<R>,
    print: fn(&R),
    json: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let _ = cache.redis().unlink_matching(&cache.keys().all_pattern()).await;
    let report = result?;
    print(&report);
    if let Some(path) = json {
        write_json(path, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A realistic top-100: member ids and scores of production-like width.
pub(crate) fn realistic_top() -> Vec<Entry> {
    (1..=100u32)
        .map(|rank| Entry {
            rank,
            member: 1_000_000 + i64::from(rank) * 7_919,
            score: 9_000_000 - i64::from(rank) * 3_571,
        })
        .collect()
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

/// The `Accept-Encoding` of an uncompressed request.
pub(crate) const PLAIN: &str = "identity";

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

/// `connections` loops, each sending its next request as soon as the last one is answered.
pub(crate) async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    accept: &'static str,
    connections: u32,
    duration: Duration,
) -> anyhow::Result<(Vec<Lane>, Duration)> {
    let started = Instant::now();
    let deadline = started + duration;
    let lanes = (0..connections).map(|_| {
        let (client, url) = (client.clone(), url.to_owned());
        tokio::spawn(async move {
            let mut lane = Lane::default();
            while Instant::now() < deadline {
                let sent = Instant::now();
                lane.record(get(&client, &url, accept).await, sent);
            }
            lane
        })
    });
    let lanes = futures::future::try_join_all(lanes).await?;
    Ok((lanes, started.elapsed()))
}

/// `connections` loops sharing `rate` requests per second on a fixed schedule; each latency is
/// counted from when its request was due, so falling behind shows in the figures.
pub(crate) async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    accept: &'static str,
    rate: f64,
    connections: u32,
    duration: Duration,
) -> anyhow::Result<(Vec<Lane>, Duration)> {
    anyhow::ensure!(rate > 0.0, "no requests were answered at full load");
    let every = Duration::from_secs_f64(f64::from(connections) / rate);
    let started = Instant::now();
    let deadline = started + duration;
    let lanes = (0..connections).map(|i| {
        let (client, url) = (client.clone(), url.to_owned());
        let first = started + every.mul_f64(f64::from(i) / f64::from(connections));
        tokio::spawn(async move {
            let mut lane = Lane::default();
            let mut due = first;
            while due < deadline {
                // On schedule, latency runs from the send (the timer may wake a millisecond late,
                // which is the generator's error, not the server's); behind schedule because the
                // last answer was slow, it runs from when the request was due.
                let since = if Instant::now() >= due {
                    due
                } else {
                    tokio::time::sleep_until(due.into()).await;
                    Instant::now()
                };
                lane.record(get(&client, &url, accept).await, since);
                due += every;
            }
            lane
        })
    });
    let lanes = futures::future::try_join_all(lanes).await?;
    Ok((lanes, started.elapsed()))
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Ok,
    /// A 503 with `Retry-After` and the code `overloaded`: refused, as designed, past the bound
    /// on requests in flight.
    Shed,
    Failed,
}

/// One GET with `Accept-Encoding: accept`, its body read to the end.
pub(crate) async fn get(client: &reqwest::Client, url: &str, accept: &str) -> Answer {
    match client.get(url).header("accept-encoding", accept).send().await {
        Ok(response) if response.status().is_success() => {
            if response.bytes().await.is_ok() {
                Answer::Ok
            } else {
                Answer::Failed
            }
        }
        Ok(response)
            if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE
                && response.headers().contains_key("retry-after") =>
        {
            // A timeout or an unreachable Redis is a 503 with Retry-After too, but a failure.
            match response.json::<serde_json::Value>().await {
                Ok(body) if body["code"] == "overloaded" => Answer::Shed,
                _ => Answer::Failed,
            }
        }
        _ => Answer::Failed,
    }
}

/// What one loop of the load generator saw: latencies in microseconds, and refusals and failures.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    micros: Vec<u32>,
    shed: u64,
    errors: u64,
}

impl Lane {
    fn record(&mut self, answer: Answer, since: Instant) {
        match answer {
            Answer::Ok => self.micros.push(u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX)),
            Answer::Shed => self.shed += 1,
            Answer::Failed => self.errors += 1,
        }
    }
}

pub(crate) fn summarise(lanes: Vec<Lane>, elapsed: Duration) -> Load {
    let errors = lanes.iter().map(|l| l.errors).sum();
    let shed = lanes.iter().map(|l| l.shed).sum();
    let mut micros: Vec<u32> = lanes.into_iter().flat_map(|l| l.micros).collect();
    micros.sort_unstable();
    let at = |q: f64| -> f64 {
        let Some(last) = micros.len().checked_sub(1) else { return 0.0 };
        f64::from(micros[((last as f64) * q).round() as usize]) / 1000.0
    };
    Load {
        requests: micros.len() as u64,
        shed,
        errors,
        requests_per_second: micros.len() as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
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
