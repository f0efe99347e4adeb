//! The read API under arbitrary input: random paths, queries, methods and headers against a real
//! server and a real Redis (with cached groups, so the happy paths are reached too). Whatever a
//! client sends, the answer is never a 5xx and the server never panics.

use std::time::Duration;

use chrono::Utc;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use ranq_cache::Write;
use ranq_core::{Entry, Snapshot};
use ranq_runtime::Shutdown;
use ranq_runtime::settings::{OnMiss, ReadSettings, Settings};
use ranq_tests::{Dialect, TestEnv};

/// One request: method, path, query and headers.
#[derive(Debug, Clone)]
struct Probe {
    method: &'static str,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
}

/// Path segments: ids that exist, edge numbers, and arbitrary (percent-encoded) text.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1".to_owned()),
        Just("2".to_owned()),
        Just("-1".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("9223372036854775808".to_owned()),
        Just("-9223372036854775809".to_owned()),
        Just(" 1".to_owned()),
        Just("0x10".to_owned()),
        Just("1e3".to_owned()),
        Just("%ff".to_owned()),
        Just("%c3%28".to_owned()),
        Just(String::new()),
        // Arbitrary bytes, percent-encoded: mostly not UTF-8 once decoded.
        proptest::collection::vec(any::<u8>(), 0..12)
            .prop_map(|bytes| bytes.iter().map(|b| format!("%{b:02x}")).collect()),
        "[0-9]{1,25}",
        any::<String>().prop_map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect()),
        "[a-zA-Z0-9._~!$&'()*+,;=:@%-]{0,40}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        segment().prop_map(|g| format!("/v1/groups/{g}/top")),
        (segment(), segment()).prop_map(|(g, m)| format!("/v1/groups/{g}/members/{m}")),
        (segment(), segment()).prop_map(|(a, b)| format!("/v1/{a}/{b}")),
        segment().prop_map(|s| format!("/{s}")),
        segment().prop_map(|s| format!("/assets/{s}")),
        Just("/v1/status".to_owned()),
        Just("/ops".to_owned()),
        Just("/assets/board.js".to_owned()),
        Just("/healthz".to_owned()),
        Just("/readyz".to_owned()),
        Just("/metrics".to_owned()),
        Just("/v1/groups//top".to_owned()),
        Just("/v1/groups/1/top/".to_owned()),
        "(/[a-z0-9%.]{0,12}){0,8}",
    ]
}

fn query() -> impl Strategy<Value = Option<String>> {
    let value = prop_oneof![
        Just("0".to_owned()),
        Just("1".to_owned()),
        Just("100".to_owned()),
        Just("101".to_owned()),
        Just("-5".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just(String::new()),
        any::<String>().prop_map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect()),
    ];
    let pair = (prop_oneof![Just("limit".to_owned()), "[a-z%]{0,8}"], value).prop_map(|(k, v)| format!("{k}={v}"));
    proptest::option::of(proptest::collection::vec(pair, 0..4).prop_map(|pairs| pairs.join("&")))
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        Just("if-none-match".to_owned()),
        Just("accept".to_owned()),
        Just("accept-encoding".to_owned()),
        Just("content-type".to_owned()),
        Just("range".to_owned()),
        "x-[a-z]{1,10}",
    ];
    let value = prop_oneof![
        Just("*".to_owned()),
        Just("\"1-1-100\"".to_owned()),
        Just("W/\"x\", \"y\"".to_owned()),
        "[ -~]{0,60}",
    ];
    proptest::collection::vec((name, value), 0..4)
}

fn probe() -> impl Strategy<Value = Probe> {
    let method = prop_oneof![Just("GET"), Just("HEAD"), Just("POST"), Just("PUT"), Just("DELETE"), Just("OPTIONS")];
    (method, path(), query(), headers()).prop_map(|(method, path, query, headers)| Probe {
        method,
        path,
        query,
        headers,
    })
}

#[test]
fn no_request_gets_a_5xx_or_crashes_the_server() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (env, base, shutdown) = runtime.block_on(async {
        let env = TestEnv::new(Dialect::Sqlite).await;
        let cache = env.cache().await;
        for (group, age) in [(1, 0), (2, 3)] {
            let version = (Utc::now() - chrono::Duration::seconds(age)).timestamp_micros();
            let entries =
                (1..=100).map(|rank| Entry { rank, member: i64::from(rank), score: -i64::from(rank) }).collect();
            cache.write_batch(&[Write::Snapshot(Snapshot::new(group, version, entries))]).await.unwrap();
        }
        let settings = ReadSettings {
            listen: "127.0.0.1:0".into(),
            stale_after: Duration::from_secs(2),
            max_age: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
            on_miss: OnMiss::Refresh,
            miss_wait: Duration::ZERO,
            refresh_rate: 100,
            local_ttl: Duration::from_secs(1),
            ui: true,
            admin_listen: "127.0.0.1:0".into(),
            ..Settings::default().read
        };
        let settings = Settings { read: settings, ..Settings::default() };
        let server = ranq_read::Server::bind(&settings, cache).await.unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        let shutdown = Shutdown::new();
        tokio::spawn(server.run_until(shutdown.clone()));
        (env, base, shutdown)
    });
    let http = reqwest::Client::new();

    let mut runner = TestRunner::new(Config { cases: 600, failure_persistence: None, ..Config::default() });
    let outcome = runner.run(&probe(), |probe| {
        let url = match &probe.query {
            Some(q) => format!("{base}{}?{q}", probe.path),
            None => format!("{base}{}", probe.path),
        };
        // Inputs no HTTP client can send are out of scope.
        let Ok(url) = reqwest::Url::parse(&url) else { return Ok(()) };
        let mut request = http.request(probe.method.parse().unwrap(), url);
        for (name, value) in &probe.headers {
            request = request.header(name, value);
        }
        let Ok(request) = request.build() else { return Ok(()) };
        let (status, body) = runtime.block_on(async {
            let response = http.execute(request).await.expect("the server answers");
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap_or_default())
        });
        prop_assert!(status < 500, "{probe:?} answered {status}: {}", String::from_utf8_lossy(&body));
        if status >= 400 && probe.method != "HEAD" {
            let json: Result<serde_json::Value, _> = serde_json::from_slice(&body);
            prop_assert!(json.is_ok_and(|j| j["error"].is_string()), "{probe:?}: not a JSON error: {body:?}");
        }
        Ok(())
    });
    let alive =
        runtime.block_on(async { http.get(format!("{base}/healthz")).send().await.map(|r| r.status().as_u16()) });
    shutdown.trigger();
    runtime.block_on(env.cleanup());
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    assert_eq!(alive.ok(), Some(200), "the server is still up after the fuzzing");
}
