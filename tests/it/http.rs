//! The read API over real HTTP against real Redis (CONTRACT §5): statuses by age, 400 for bad
//! input, 404 MISS, ETag/304, the member endpoint, and JSON errors everywhere.

use std::time::Duration;

use chrono::Utc;
use ranq_cache::{Cache, Write};
use ranq_core::{Entry, Snapshot};
use ranq_runtime::Shutdown;
use ranq_runtime::settings::ReadSettings;
use ranq_tests::{Dialect, TestEnv};
use serde_json::Value;

struct Api {
    base: String,
    shutdown: Shutdown,
    http: reqwest::Client,
}

impl Api {
    async fn start(cache: Cache) -> Self {
        let settings = ReadSettings {
            listen: "127.0.0.1:0".into(),
            stale_after: Duration::from_secs(2),
            max_age: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        };
        let server = ranq_read::Server::bind(&settings, cache).await.unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        let shutdown = Shutdown::new();
        tokio::spawn(server.run_until(shutdown.clone()));
        Self { base, shutdown, http: reqwest::Client::new() }
    }

    async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }
}

/// Caches a snapshot of `group` computed `age` ago, with members 1..=n scoring 1000-rank.
async fn cache_aged(cache: &Cache, group: i64, n: u32, age: Duration) {
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
    let metrics = api.http.get(format!("{}/metrics", api.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"ranq_reads_total{status="FRESH"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"ranq_reads_total{status="MISS"} 1"#), "{metrics}");
    assert!(metrics.contains("ranq_cache_age_seconds_bucket"), "{metrics}");
    api.shutdown.trigger();
    env.cleanup().await;
}

#[tokio::test]
async fn readiness_fails_when_redis_is_unreachable() {
    // A connection manager to a Redis that then goes away: point one at a private server.
    let Some(server) =
        std::env::split_paths(&std::env::var_os("PATH").unwrap()).map(|d| d.join("redis-server")).find(|p| p.is_file())
    else {
        panic!("redis-server must be on PATH for this test (scripts/test installs it)");
    };
    let port = ranq_tests::free_port();
    let mut redis = std::process::Command::new(server)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("redis://127.0.0.1:{port}");
    let cache = ranq_tests::eventually(Duration::from_secs(5), "private redis answers", || async {
        Cache::connect(&url, "readyz").await.ok()
    })
    .await;
    let api = Api::start(cache).await;
    assert_eq!(api.get("/readyz").await.0, 200);
    redis.kill().unwrap();
    redis.wait().unwrap();
    let (status, _, body) = api.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].is_string());
    api.shutdown.trigger();
}
