//! The read benches' load generator and scratch space: closed loops (each connection sends its
//! next request as soon as the last is answered) and open loops (requests on a fixed schedule,
//! each latency counted from when it was due, so a stall cannot hide itself), what each request
//! came to, and a Redis namespace of the bench's own (the read benches need no database).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::Utc;
use ranq_cache::Cache;
use ranq_core::Entry;
use serde::Serialize;

use crate::sandbox::{Lab, write_json};

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

/// The `Accept-Encoding` of an uncompressed request.
pub(crate) const PLAIN: &str = "identity";

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
