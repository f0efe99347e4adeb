//! The read API over real HTTP against real Redis (docs/reference/http.md): statuses by age, 400 for bad
//! input, 404 MISS, ETag/304, the member endpoint, JSON errors everywhere, `/v1/status` and the
//! web board's pages.

use std::time::Duration;

use chrono::Utc;
use ranq_cache::{Cache, Write};
use ranq_core::{Entry, RefreshJob, Snapshot};
use ranq_queue::{Backpressure, Queue};
use ranq_runtime::Shutdown;
use ranq_runtime::settings::{OnMiss, ReadSettings, Settings};
use ranq_tests::{Dialect, Proc, TestEnv, eventually, free_port, truth};
use serde_json::Value;

pub(crate) struct Api {
    /// The public listener.
    pub base: String,
    /// The admin listener.
    pub admin: String,
    pub shutdown: Shutdown,
    pub http: reqwest::Client,
}

impl Api {
    /// A read API with short ages (FRESH ≤ 2 s < STALE ≤ 5 s < MISS) that asks for no refreshes.
    async fn start(cache: Cache) -> Self {
        Self::start_with(cache, OnMiss::None, Duration::ZERO).await
    }

    async fn start_with(cache: Cache, on_miss: OnMiss, miss_wait: Duration) -> Self {
        Self::start_full(cache, on_miss, miss_wait, Duration::from_secs(1)).await
    }

    async fn start_full(cache: Cache, on_miss: OnMiss, miss_wait: Duration, local_ttl: Duration) -> Self {
        let settings = ReadSettings {
            listen: "127.0.0.1:0".into(),
            stale_after: Duration::from_secs(2),
            max_age: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            on_miss,
            miss_wait,
            refresh_rate: 100,
            local_ttl,
            ..Settings::default().read
        };
        Self::start_read(cache, settings).await
    }

    pub(crate) async fn start_read(cache: Cache, read: ReadSettings) -> Self {
        let read = ReadSettings { admin_listen: "127.0.0.1:0".into(), ..read };
        let settings = Settings { read, ..Settings::default() };
        let server = ranq_read::Server::bind(&settings, cache).await.unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        let admin = format!("http://{}", server.admin_addr().unwrap());
        let shutdown = Shutdown::new();
        tokio::spawn(server.run_until(shutdown.clone()));
        // A client that asks for no compression, as the JSON comparisons below expect; the
        // compression tests ask for it themselves.
        let http = reqwest::Client::builder().no_gzip().no_brotli().build().unwrap();
        Self { base, admin, shutdown, http }
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        Self::fetch(&self.http, &self.base, path).await
    }

    /// A GET on the admin listener.
    async fn get_admin(&self, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        Self::fetch(&self.http, &self.admin, path).await
    }

    async fn fetch(http: &reqwest::Client, base: &str, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }
}

/// Caches a snapshot of `group` computed `age` ago, with members 1..=n scoring 1000-rank.
pub(crate) async fn cache_aged(cache: &Cache, group: i64, n: u32, age: Duration) {
    let version = (Utc::now() - chrono::Duration::from_std(age).unwrap()).timestamp_micros();
    let entries =
        (1..=n).map(|rank| Entry { rank, member: i64::from(rank) * 10, score: 1000 - i64::from(rank) }).collect();
    cache.write_batch(&[Write::Snapshot(Snapshot::new(group, version, entries))]).await.unwrap();
}

#[tokio::test]
async fn a_fresh_snapshot_is_served_with_status_fresh_and_cache_headers() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    cache_aged(&cache, 42, 100, Duration::ZERO).await;
    let api = Api::start(cache).await;

    let (status, headers, body) = api.get("/v1/groups/42/top?limit=3").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-ranq-status"], "FRESH");
    assert_eq!(body["status"], "FRESH");
    assert_eq!(body["group"], 42);
    assert_eq!(body["entries"].as_array().unwrap().len(), 3);
    assert_eq!(body["entries"][0], serde_json::json!({"rank": 1, "member": 10, "score": 999}));
    assert!(body["age_ms"].as_u64().unwrap() < 2_000);
    let cache_control = headers["cache-control"].to_str().unwrap();
    assert!(cache_control.starts_with("max-age="), "{cache_control}");

    // The default limit is the whole top 100.
    let (_, _, all) = api.get("/v1/groups/42/top").await;
    assert_eq!(all["entries"].as_array().unwrap().len(), 100);

    // If-None-Match with the current ETag: 304, no body.
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let again = api
        .http
        .get(format!("{}/v1/groups/42/top?limit=3", api.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);
    // Another limit is another representation.
    let other = api
        .http
        .get(format!("{}/v1/groups/42/top?limit=4", api.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 200);
    api.shutdown.trigger();
    env.cleanup().await;
}

#[tokio::test]
async fn a_snapshot_older_than_stale_after_is_served_as_stale_and_older_than_max_age_is_a_miss() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    cache_aged(&cache, 1, 5, Duration::from_secs(3)).await;
    cache_aged(&cache, 2, 5, Duration::from_secs(6)).await;
    let api = Api::start(cache).await;

    let (status, headers, body) = api.get("/v1/groups/1/top").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("STALE")));
    assert_eq!(headers["x-ranq-status"], "STALE");
    assert_eq!(headers["cache-control"], "max-age=0");

    let (status, headers, body) = api.get("/v1/groups/2/top").await;
    assert_eq!(status, 404);
    assert_eq!(headers["x-ranq-status"], "MISS");
    assert_eq!(
        body,
        serde_json::json!({"error": "group 2 is not cached", "status": "MISS", "group": 2, "code": "miss"})
    );
    api.shutdown.trigger();
    env.cleanup().await;
}

#[tokio::test]
async fn an_unknown_group_is_a_404_miss() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let api = Api::start(env.cache().await).await;
    let (status, headers, body) = api.get("/v1/groups/123456/top").await;
    assert_eq!((status, body["status"].as_str(), body["group"].as_i64()), (404, Some("MISS"), Some(123456)));
    assert_eq!(headers["x-ranq-status"], "MISS");
    api.shutdown.trigger();
    env.cleanup().await;
}

#[tokio::test]
async fn bad_input_is_a_400_with_a_json_error() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    cache_aged(&cache, 1, 5, Duration::ZERO).await;
    let api = Api::start(cache).await;
    for path in [
        "/v1/groups/abc/top",
        "/v1/groups/1.5/top",
        "/v1/groups/99999999999999999999/top",
        "/v1/groups/1/top?limit=0",
        "/v1/groups/1/top?limit=101",
        "/v1/groups/1/top?limit=-1",
        "/v1/groups/1/top?limit=many",
        "/v1/groups/1/members/x",
    ] {
        let (status, _, body) = api.get(path).await;
        assert_eq!(status, 400, "{path}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: {body}");
    }
    let (status, _, body) = api.get("/nope").await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
    let response = api.http.post(format!("{}/v1/groups/1/top", api.base)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    api.shutdown.trigger();
    env.cleanup().await;
}

#[tokio::test]
async fn the_member_endpoint_answers_rank_and_score_from_the_snapshot() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    cache_aged(&cache, 7, 10, Duration::ZERO).await;
    let api = Api::start(cache).await;

    let (status, headers, body) = api.get("/v1/groups/7/members/30").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-ranq-status"], "FRESH");
    assert_eq!(
        (body["rank"].as_u64(), body["score"].as_i64(), body["status"].as_str()),
        (Some(3), Some(997), Some("FRESH"))
    );

    let (status, _, body) = api.get("/v1/groups/7/members/31").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("member not in top 100")));
    let (status, _, body) = api.get("/v1/groups/8/members/1").await;
    assert_eq!((status, body["status"].as_str()), (404, Some("MISS")));
    api.shutdown.trigger();
    env.cleanup().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_endpoints_answer() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    cache_aged(&cache, 1, 1, Duration::ZERO).await;
    let api = Api::start(cache).await;
    assert_eq!(api.get("/healthz").await.0, 200);
    assert_eq!(api.get("/readyz").await.0, 200);
    api.get("/v1/groups/1/top").await;
    api.get("/v1/groups/2/top").await;
    let metrics = api.http.get(format!("{}/metrics", api.admin)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"ranq_reads_total{status="FRESH"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"ranq_reads_total{status="MISS"} 1"#), "{metrics}");
    assert!(metrics.contains("ranq_cache_age_seconds_bucket"), "{metrics}");
    api.shutdown.trigger();
    env.cleanup().await;
}

#[tokio::test]
async fn readiness_fails_when_redis_is_unreachable() {
    // A connection manager to a Redis that then goes away: point one at a private server.
    let mut redis = ranq_launch::RedisServer::start().expect("redis-server starts (scripts/test installs it)");
    let cache = Cache::connect(&redis.url(), "readyz").await.unwrap();
    let api = Api::start(cache).await;
    assert_eq!(api.get("/readyz").await.0, 200);
    redis.kill();
    let (status, _, body) = api.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].is_string());
    // The operations page's data says the same, as a JSON error, not a hang.
    let (status, headers, body) = api.get_admin("/v1/status").await;
    assert_eq!((status, body["code"].as_str()), (503, Some("cache_unavailable")), "{body}");
    assert_eq!(headers["retry-after"], "1");
    api.shutdown.trigger();
}

/// A series of the API's own `/metrics` (a counter or a gauge), 0 when it was never set.
pub(crate) async fn metric(api: &Api, series: &str) -> u64 {
    let text = api.http.get(format!("{}/metrics", api.admin)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse::<f64>().ok()))
        .map_or(0, |v| v as u64)
}

fn worker(env: &TestEnv) -> Proc {
    let mut cmd = env.ranq();
    cmd.args(["worker", "--batch-wait", "1ms"]);
    Proc::spawn("worker", cmd)
}

/// `read.on_miss = "refresh"` with `read.miss_wait`: a group nobody refreshed yet is refreshed
/// through the queue while the reader waits, and served FRESH with the SQL truth; a STALE answer
/// asks for a refresh in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_asks_the_workers_and_waits_for_fresh_data_and_a_stale_read_asks_in_the_background() {
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(5, 20).await;
    let (source, cache) = (env.source().await, env.cache().await);
    let sql = env.sql().await;
    let mut w = worker(&env);
    let queue = Queue::new(cache.redis(), cache.keys(), &ranq_runtime::Settings::default().worker);
    eventually(Duration::from_secs(30), "the worker registered", || async {
        (queue.stats().await.unwrap().workers_alive >= 1).then_some(())
    })
    .await;
    let api = Api::start_with(cache.clone(), OnMiss::Refresh, Duration::from_secs(10)).await;

    let (status, headers, body) = api.get("/v1/groups/3/top").await;
    assert_eq!((status, &headers["x-ranq-status"]), (200, &"FRESH".parse::<reqwest::header::HeaderValue>().unwrap()));
    let entries: Vec<Entry> = serde_json::from_value(body["entries"].clone()).unwrap();
    assert_eq!(entries, truth(&sql, 3).await);
    assert_eq!(metric(&api, r#"ranq_read_refreshes_total{outcome="enqueued"}"#).await, 1);
    assert_eq!(metric(&api, r#"ranq_read_miss_waits_total{outcome="served"}"#).await, 1);

    cache_aged(&cache, 4, 5, Duration::from_secs(3)).await;
    let (_, headers, _) = api.get("/v1/groups/4/top").await;
    assert_eq!(headers["x-ranq-status"], "STALE");
    eventually(Duration::from_secs(15), "the stale group refreshed in the background", || async {
        let (_, headers, body) = api.get("/v1/groups/4/top").await;
        (headers["x-ranq-status"] == "FRESH" && body["entries"].as_array().map(Vec::len) == Some(20)).then_some(())
    })
    .await;
    api.shutdown.trigger();
    assert!(w.terminate(Duration::from_secs(20)).success());
    source.close().await;
    env.cleanup().await;
}

/// An unknown group answers MISS without flooding the queue: concurrent reads coalesce into one
/// job, and once a worker has found the group absent, reads stop asking at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_reads_of_an_unknown_group_cost_at_most_a_handful_of_jobs() {
    const UNKNOWN: i64 = 999_999;
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(2, 5).await;
    let cache = env.cache().await;
    let api = Api::start_with(cache.clone(), OnMiss::Refresh, Duration::ZERO).await;
    let queue = Queue::new(cache.redis(), cache.keys(), &ranq_runtime::Settings::default().worker);
    let flood = |n: usize| {
        let api = &api;
        async move {
            for _ in 0..n / 50 {
                let wave = (0..50).map(|_| api.get("/v1/groups/999999/top"));
                for (status, headers, _) in futures::future::join_all(wave).await {
                    assert_eq!((status, headers["x-ranq-status"].to_str().unwrap()), (404, "MISS"));
                }
            }
        }
    };

    // No worker yet: everything asked for waits in the queue, as one job.
    flood(500).await;
    assert_eq!(queue.stats().await.unwrap().pending, 1, "one job for five hundred reads");

    let mut w = worker(&env);
    eventually(Duration::from_secs(15), "the worker found the group absent", || async {
        cache.is_gone(UNKNOWN).await.unwrap().then_some(())
    })
    .await;
    // Past the one-second memory of the first ask: now the tombstone answers.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    flood(500).await;
    let enqueued = metric(&api, r#"ranq_read_refreshes_total{outcome="enqueued"}"#).await;
    let absent = metric(&api, r#"ranq_read_refreshes_total{outcome="absent"}"#).await;
    assert!(enqueued <= 3, "{enqueued} jobs for a thousand reads");
    assert!(absent >= 1, "the tombstone stopped the reads from asking");
    assert_eq!(queue.stats().await.unwrap().pending, 0);
    api.shutdown.trigger();
    assert!(w.terminate(Duration::from_secs(20)).success());
    env.cleanup().await;
}

/// `read.local_ttl`: a read process keeps what it read, and drops it the moment a worker
/// announces a write of the group on `<ns>:written` — here with a TTL long enough that only the
/// announcement can explain the new answer.
#[tokio::test]
async fn a_kept_copy_is_served_until_a_write_of_the_group_is_announced() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    let api = Api::start_full(cache.clone(), OnMiss::None, Duration::ZERO, Duration::from_secs(60)).await;
    let key = cache.keys().top(1);
    let version = |body: &Value| body["version"].as_i64().unwrap_or(0);
    let entries = || vec![Entry { rank: 1, member: 7, score: 7 }];

    // Snapshots written behind the API's back (no announcement): once it has subscribed and kept
    // a copy, a read after the overwrite still answers the copy.
    eventually(Duration::from_secs(5), "the API answers from its copy", || {
        let (api, env, key) = (&api, &env, key.clone());
        async move {
            let mut conn = env.redis().await;
            let base = Utc::now().timestamp_micros();
            let set = |v: i64| redis::cmd("SET").arg(&key).arg(Snapshot::new(1, v, entries()).to_json()).clone();
            set(base).query_async::<()>(&mut conn).await.unwrap();
            let (_, _, first) = api.get("/v1/groups/1/top").await;
            set(base + 1).query_async::<()>(&mut conn).await.unwrap();
            let (_, _, second) = api.get("/v1/groups/1/top").await;
            // Kept: the overwrite does not show, whatever the copy holds.
            (version(&second) == version(&first) && version(&second) != base + 1).then_some(())
        }
    })
    .await;

    // A worker's write announces the group: the next reads answer it, long before the TTL.
    let written = Utc::now().timestamp_micros() + 1_000;
    cache.write_batch(&[Write::Snapshot(Snapshot::new(1, written, entries()))]).await.unwrap();
    eventually(Duration::from_secs(2), "the announced write served", || async {
        let (_, _, body) = api.get("/v1/groups/1/top").await;
        (version(&body) == written).then_some(())
    })
    .await;
    api.shutdown.trigger();
    env.cleanup().await;
}

/// A value under a snapshot key that is not a snapshot (a bug elsewhere, a hand edit) is never
/// served and never an error for the client: 404 MISS, and a log line naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_snapshot_answers_miss_and_is_logged() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    let mut conn = env.redis().await;
    redis::cmd("SET").arg(cache.keys().top(5)).arg("{not a snapshot").query_async::<()>(&mut conn).await.unwrap();
    let log = env.dir.join("serve.log");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut serve = {
        let mut cmd = env.ranq();
        cmd.args(["serve", "--listen", &addr]).stderr(std::fs::File::create(&log).unwrap());
        Proc::spawn("serve", cmd)
    };
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v1/groups/5/top");
    let response =
        eventually(Duration::from_secs(15), "serve answers", || async { http.get(&url).send().await.ok() }).await;
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(response.headers()["x-ranq-status"], "MISS");
    let body: Value = response.json().await.unwrap();
    assert_eq!((body["status"].as_str(), body["group"].as_i64()), (Some("MISS"), Some(5)), "{body}");
    assert!(serve.terminate(Duration::from_secs(20)).success());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.lines().any(|l| l.contains("corrupt snapshot read as a MISS") && l.contains(&cache.keys().top(5))),
        "{logged}"
    );
    env.cleanup().await;
}

/// A MISS waits (`read.miss_wait`) only for a refresh that was pushed: readers of a group the
/// workers found absent, alone or in a crowd, are answered at once rather than after the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_for_a_group_known_absent_does_not_wait() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    let version = Utc::now().timestamp_micros();
    cache.write_batch(&[Write::Absent { group: 77, version }]).await.unwrap();
    let api = Api::start_with(cache.clone(), OnMiss::Refresh, Duration::from_secs(10)).await;

    let wave = (0..20).map(|_| api.get("/v1/groups/77/top"));
    for (status, _, _) in futures::future::join_all(wave).await {
        assert_eq!(status, 404);
    }
    let waits = metric(&api, r#"ranq_read_miss_waits_total{outcome="missed"}"#).await
        + metric(&api, r#"ranq_read_miss_waits_total{outcome="served"}"#).await;
    assert_eq!(waits, 0, "a MISS waited for a refresh nobody pushed");
    assert_eq!(metric(&api, r#"ranq_read_refreshes_total{outcome="absent"}"#).await, 1);
    assert_eq!(metric(&api, r#"ranq_read_refreshes_total{outcome="enqueued"}"#).await, 0);
    api.shutdown.trigger();
    env.cleanup().await;
}

/// The OpenAPI document is generated from the handlers and body types; `docs/openapi.json` must
/// be exactly what the server serves. `RANQ_WRITE_OPENAPI=1` rewrites the checked-in copy.
#[tokio::test]
async fn the_served_openapi_document_is_the_one_checked_in_and_covers_every_route() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let api = Api::start(env.cache().await).await;
    let response = api.http.get(format!("{}/openapi.json", api.base)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let served = response.text().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    if std::env::var_os("RANQ_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, &served).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        served == checked_in,
        "docs/openapi.json differs from the served document; regenerate it with \
         RANQ_WRITE_OPENAPI=1 cargo test -p ranq-tests --test it openapi"
    );
    let doc: Value = serde_json::from_str(&served).unwrap();
    let routes = ["/v1/groups/{group}/top", "/v1/groups/{group}/members/{member}", "/v1/status", "/healthz", "/readyz"];
    for route in routes.into_iter().chain(["/metrics"]) {
        assert!(doc["paths"][route]["get"].is_object(), "{route} is not documented");
    }
    for status in ["200", "304", "400", "404", "503"] {
        assert!(doc["paths"]["/v1/groups/{group}/top"]["get"]["responses"][status].is_object(), "{status}");
    }
    api.shutdown.trigger();
    env.cleanup().await;
}

#[tokio::test]
async fn v1_status_reports_freshness_by_age_bucket_and_the_queue_as_ranq_status_does() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    // FRESH ≤ 400 s < STALE ≤ 1000 s < MISS: buckets at 100, 200, 300, 400 and 1000 s. Every age
    // sits a minute or more from a bound, so the reports below agree however slowly the test runs.
    for (group, secs) in [(1, 0), (2, 0), (3, 250), (4, 600), (5, 3000)] {
        cache_aged(&cache, group, 3, Duration::from_secs(secs)).await;
    }
    let queue = Queue::new(cache.redis(), cache.keys(), &ranq_runtime::Settings::default().worker);
    let jobs: Vec<RefreshJob> =
        [7, 8, 9].into_iter().map(|group| RefreshJob::new(group, ranq_core::job::Reason::Manual)).collect();
    queue.enqueue(&jobs, &Backpressure { chunk: 10, max_backlog: 1_000, wait: Duration::from_secs(5) }).await.unwrap();
    let read = ReadSettings {
        listen: "127.0.0.1:0".into(),
        stale_after: Duration::from_secs(400),
        max_age: Duration::from_secs(1000),
        on_miss: OnMiss::None,
        ..Settings::default().read
    };
    let api = Api::start_read(cache, read).await;

    // Reports are shared: requests in flight together wait for one gather and get its report.
    let burst = futures::future::join_all((0..8).map(|_| api.get_admin("/v1/status"))).await;
    let gathered: std::collections::HashSet<String> = burst.iter().map(|(_, _, r)| r["now"].to_string()).collect();
    assert_eq!(gathered.len(), 1, "eight concurrent requests, {} gathers", gathered.len());
    let (status, headers, report) = burst.into_iter().next().unwrap();
    assert_eq!(status, 200, "{report}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(report["leader"], Value::Null, "no producer runs");
    assert_eq!(report["queue"], serde_json::json!({"pending": 3, "running": 0, "dead": 0}), "{report}");
    let g = &report["groups"];
    assert_eq!((g["cached"].as_u64(), g["fresh"].as_u64(), g["stale"].as_u64()), (Some(5), Some(3), Some(1)));
    assert_eq!(g["expired"], 1, "{report}");
    let buckets = ranq_tests::age_buckets(g);
    let expected =
        [(Some(100_000), 2), (Some(200_000), 0), (Some(300_000), 1), (Some(400_000), 0), (Some(1_000_000), 1)];
    assert_eq!(buckets, expected.into_iter().chain([(None, 1)]).collect::<Vec<_>>(), "{report}");
    assert_eq!(report["policy"], serde_json::json!({"stale_after_ms": 400_000, "max_age_ms": 1_000_000}));

    // The CLI, with the same policy, prints the same object.
    let out = env
        .ranq()
        .args(["status", "--json"])
        .env("RANQ_READ__STALE_AFTER", "400s")
        .env("RANQ_READ__MAX_AGE", "1000s")
        .output()
        .unwrap();
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in ["leader", "queue", "ticks", "last_tick", "quarantine", "policy"] {
        assert_eq!(cli[field], report[field], "{field}");
    }
    for field in ["cached", "fresh", "stale", "expired", "quarantined", "age_buckets"] {
        assert_eq!(cli["groups"][field], report["groups"][field], "{field}");
    }

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (_, _, later) = api.get_admin("/v1/status").await;
    assert_ne!(later["now"], report["now"], "a report older than a second is gathered again");
    api.shutdown.trigger();
    env.cleanup().await;
}

#[tokio::test]
async fn the_web_pages_are_served_with_a_strict_policy_and_revalidate_by_etag() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let api = Api::start(env.cache().await).await;
    for (base, path, content_type) in [
        (&api.base, "/", "text/html; charset=utf-8"),
        (&api.admin, "/ops", "text/html; charset=utf-8"),
        (&api.base, "/assets/board.js", "text/javascript; charset=utf-8"),
        (&api.admin, "/assets/ops.js", "text/javascript; charset=utf-8"),
        (&api.base, "/assets/style.css", "text/css; charset=utf-8"),
    ] {
        let response = api.http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        if content_type.starts_with("text/html") {
            let csp = headers["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"), "{path}: {csp}");
        }
        assert!(!response.bytes().await.unwrap().is_empty(), "{path} is empty");
        // A compressing proxy hands the tag back weak (W/"…"): it still matches.
        let etag = format!("W/{}", headers["etag"].to_str().unwrap());
        let again = api.http.get(format!("{base}{path}")).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(again.status().as_u16(), 304, "{path}");
    }
    let (status, _, body) = api.get("/assets/nothing.js").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("no_asset")), "{body}");
    let (status, _, _) = api.get("/assets/index.html").await;
    assert_eq!(status, 404, "pages are served at their own paths only");
    // Read-only: the pages' routes take GET only.
    let post = api.http.post(format!("{}/v1/status", api.admin)).send().await.unwrap();
    assert_eq!(post.status().as_u16(), 405);
    api.shutdown.trigger();
    env.cleanup().await;
}

/// What tells internal state — the operations page, `/v1/status`, `/metrics` — is served on the
/// admin listener only; the public one answers a JSON 404 for it.
#[tokio::test]
async fn the_public_listener_gives_no_internal_state_away_and_the_admin_one_serves_it() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    cache_aged(&cache, 1, 3, Duration::ZERO).await;
    let api = Api::start(cache).await;
    for path in ["/ops", "/v1/status", "/metrics"] {
        let (status, _, body) = api.get(path).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("no_route")), "public {path}: {body}");
        let response = api.http.get(format!("{}{path}", api.admin)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "admin {path}");
    }
    // Both serve the API and the probes.
    for base in [&api.base, &api.admin] {
        for path in ["/v1/groups/1/top", "/healthz", "/readyz", "/openapi.json"] {
            let response = api.http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(response.status().as_u16(), 200, "{base}{path}");
        }
    }
    api.shutdown.trigger();
    env.cleanup().await;
}

#[tokio::test]
async fn with_the_ui_off_the_public_listener_serves_no_pages() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let read = ReadSettings { listen: "127.0.0.1:0".into(), ui: false, ..Settings::default().read };
    let api = Api::start_read(env.cache().await, read).await;
    for path in ["/", "/ops", "/assets/board.js", "/v1/status"] {
        let (status, _, body) = api.get(path).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("no_route")), "{path}: {body}");
    }
    assert_eq!(api.get("/healthz").await.0, 200);
    // The operators' pages stay on the admin listener.
    assert_eq!(api.get_admin("/ops").await.0, 200);
    api.shutdown.trigger();
    env.cleanup().await;
}
