//! The public read tier as a browser, a game client and an abusive client meet it
//! (docs/deploying.md, "On the internet"): CORS for the origins allowed and no other, gzip and
//! brotli answers that decode to the plain one and revalidate by the same tag, a 503 with
//! `Retry-After` past the bound on requests in flight, a 429 past a client's rate, and slow
//! clients disconnected.

use std::io::Read as _;
use std::time::Duration;

use ranq_runtime::settings::{ClientIp, OnMiss, ReadSettings, Settings};
use ranq_tests::{Dialect, TestEnv};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http::{Api, cache_aged, metric};

fn read_settings() -> ReadSettings {
    ReadSettings { listen: "127.0.0.1:0".into(), on_miss: OnMiss::None, ..Settings::default().read }
}

#[tokio::test]
async fn a_cors_preflight_from_an_allowed_origin_succeeds_and_from_another_does_not() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    cache_aged(&cache, 1, 5, Duration::ZERO).await;
    let read = ReadSettings { cors_origins: vec!["https://game.example".into()], ..read_settings() };
    let api = Api::start_read(cache, read).await;
    let url = format!("{}/v1/groups/1/top", api.base);
    let preflight = |origin: &'static str| {
        api.http
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "if-none-match")
            .send()
    };

    let allowed = preflight("https://game.example").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], "https://game.example");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("GET"), "{h:?}");
    assert!(h["access-control-allow-headers"].to_str().unwrap().contains("if-none-match"), "{h:?}");

    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none(), "{:?}", other.headers());

    // The answer itself names the origin and exposes the headers a client reads.
    let answer = api.http.get(&url).header("origin", "https://game.example").send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["access-control-allow-origin"], "https://game.example");
    let exposed = answer.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(exposed.contains("etag") && exposed.contains("x-ranq-status"), "{exposed}");
    api.shutdown.trigger();

    // Off by default: no CORS headers at all.
    let api = Api::start_read(env.cache().await, read_settings()).await;
    let url = format!("{}/v1/groups/1/top", api.base);
    let answer = api.http.get(&url).header("origin", "https://game.example").send().await.unwrap();
    assert!(answer.headers().get("access-control-allow-origin").is_none(), "{:?}", answer.headers());
    api.shutdown.trigger();
    env.cleanup().await;
}

/// A GET with `Accept-Encoding`: status, headers, and the body as sent.
async fn get_encoded(
    api: &Api,
    path: &str,
    accept: &str,
    etag: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = api.http.get(format!("{}{path}", api.base)).header("accept-encoding", accept);
    if let Some(etag) = etag {
        request = request.header("if-none-match", etag);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.bytes().await.unwrap().to_vec())
}

fn decode(coding: &str, body: &[u8]) -> Value {
    let mut out = Vec::new();
    match coding {
        "gzip" => flate2::read::GzDecoder::new(body).read_to_end(&mut out).unwrap(),
        "br" => brotli::Decompressor::new(body, 4096).read_to_end(&mut out).unwrap(),
        _ => return serde_json::from_slice(body).unwrap(),
    };
    serde_json::from_slice(&out).unwrap()
}

/// Everything of an answer but its age, which moves between two requests.
fn ageless(mut body: Value) -> Value {
    body.as_object_mut().unwrap().remove("age_ms");
    body
}

#[tokio::test]
async fn gzip_and_brotli_answers_decode_to_the_plain_json_and_revalidate_by_the_same_tag() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    cache_aged(&cache, 1, 100, Duration::ZERO).await;
    cache_aged(&cache, 2, 37, Duration::ZERO).await;
    // With in-memory copies (the compressed entries made once per copy) and without (each answer
    // compressed whole).
    for local_ttl in [Duration::from_secs(30), Duration::ZERO] {
        let api = Api::start_read(env.cache().await, ReadSettings { local_ttl, ..read_settings() }).await;
        for path in ["/v1/groups/1/top", "/v1/groups/1/top?limit=10", "/v1/groups/1/top?limit=33", "/v1/groups/2/top"] {
            let (status, plain_headers, plain) = get_encoded(&api, path, "identity", None).await;
            assert_eq!(status, 200, "{path}");
            assert!(plain_headers.get("content-encoding").is_none());
            let plain_etag = plain_headers["etag"].to_str().unwrap().to_owned();
            let plain = decode("identity", &plain);
            for (accept, coding) in [("gzip", "gzip"), ("br", "br"), ("gzip, deflate, br, zstd", "br")] {
                // Twice: the second is answered from the copy the first kept.
                for _ in 0..2 {
                    let (status, headers, body) = get_encoded(&api, path, accept, None).await;
                    let at = format!("{path} {accept} ttl {local_ttl:?}");
                    assert_eq!(status, 200, "{at}");
                    assert_eq!(headers["content-encoding"], coding, "{at}");
                    assert!(headers["vary"].to_str().unwrap().contains("accept-encoding"), "{at}");
                    assert_eq!(headers["etag"].to_str().unwrap(), format!("W/{plain_etag}"), "{at}");
                    // A short answer has little to gain; a full top-100 must shrink to under half.
                    if path == "/v1/groups/1/top" {
                        assert!(body.len() * 2 < plain.to_string().len(), "{at}: {} bytes compressed", body.len());
                    }
                    assert_eq!(ageless(decode(coding, &body)), ageless(plain.clone()), "{at}");
                    // Either tag revalidates either representation, with no body.
                    for tag in [plain_etag.clone(), format!("W/{plain_etag}")] {
                        let (status, headers, body) = get_encoded(&api, path, accept, Some(&tag)).await;
                        assert_eq!((status, body.len()), (304, 0), "{at} with {tag}");
                        assert!(headers.get("content-encoding").is_none(), "{at}: a 304 has no body to encode");
                    }
                }
            }
        }
        api.shutdown.trigger();
    }
    env.cleanup().await;
}

#[tokio::test]
async fn past_the_bound_on_requests_in_flight_requests_get_a_503_with_retry_after_at_once() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    // Every read is a MISS that waits two seconds for a refresh no worker makes: each stays in
    // flight that long.
    let read = ReadSettings {
        max_in_flight: 2,
        on_miss: OnMiss::Refresh,
        miss_wait: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        ..read_settings()
    };
    let api = Api::start_read(env.cache().await, read).await;
    let answers = futures::future::join_all((0..10).map(|i| {
        let (http, base) = (api.http.clone(), api.base.clone());
        async move {
            let response = http.get(format!("{base}/v1/groups/{}/top", 100 + i)).send().await.unwrap();
            let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (response.status().as_u16(), retry, response.json::<Value>().await.unwrap())
        }
    }))
    .await;
    let admitted = answers.iter().filter(|(status, _, _)| *status == 404).count();
    let shed: Vec<_> = answers.iter().filter(|(status, _, _)| *status == 503).collect();
    assert_eq!((admitted, shed.len()), (2, 8), "{answers:?}");
    for (_, retry, body) in shed {
        assert_eq!((retry.as_deref(), body["code"].as_str()), (Some("1"), Some("overloaded")), "{body}");
    }
    // The probes are not shed: an orchestrator must not restart a busy server.
    let busy: Vec<_> =
        (0..2).map(|i| tokio::spawn(api.http.get(format!("{}/v1/groups/{}/top", api.base, 200 + i)).send())).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.get("/v1/groups/300/top").await.0, 503, "both slots are taken");
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(api.get(probe).await.0, 200, "{probe} while the API is full");
    }
    for request in busy {
        assert_eq!(request.await.unwrap().unwrap().status(), 404);
    }
    // Operators see the refusals.
    assert_eq!(metric(&api, r#"ranq_read_refused_total{reason="overloaded"}"#).await, 9);
    api.shutdown.trigger();
    env.cleanup().await;
}

#[tokio::test]
async fn a_client_over_its_rate_gets_a_429_with_retry_after_and_other_clients_do_not() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    cache_aged(&cache, 1, 3, Duration::ZERO).await;
    let read = ReadSettings { client_rate: 1, client_burst: 3, client_ip: ClientIp::XForwardedFor, ..read_settings() };
    let api = Api::start_read(cache, read).await;
    let from = |client: &'static str| {
        let (http, base) = (api.http.clone(), api.base.clone());
        async move {
            // The proxy appends the address it saw: the last one counts, not what the client claims.
            let response = http
                .get(format!("{base}/v1/groups/1/top"))
                .header("x-forwarded-for", format!("10.9.9.9, {client}"))
                .send()
                .await
                .unwrap();
            let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (response.status().as_u16(), retry, response.json::<Value>().await.unwrap())
        }
    };
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(from("192.0.2.1").await);
    }
    let codes: Vec<u16> = statuses.iter().map(|(status, _, _)| *status).collect();
    assert_eq!(codes, [200, 200, 200, 429, 429], "a burst of 3, then one a second");
    let (_, retry, body) = &statuses[3];
    assert_eq!(body["code"], "rate_limited", "{body}");
    assert!(retry.as_deref().and_then(|r| r.parse::<u64>().ok()).is_some_and(|r| r >= 1), "{retry:?}");
    assert_eq!(from("192.0.2.2").await.0, 200, "another client has a bucket of its own");
    // The probes are not rate limited.
    for _ in 0..5 {
        assert_eq!(api.get("/healthz").await.0, 200);
    }
    assert_eq!(metric(&api, r#"ranq_read_refused_total{reason="rate_limited"}"#).await, 2);
    api.shutdown.trigger();
    env.cleanup().await;
}

/// Reads until the server closes the connection; false if it is still open after `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_slow_or_silent_client_is_disconnected_after_the_header_timeout() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    cache_aged(&cache, 1, 3, Duration::ZERO).await;
    let read = ReadSettings { header_timeout: Duration::from_secs(1), ..read_settings() };
    let api = Api::start_read(cache, read).await;
    let addr = api.base.trim_start_matches("http://").to_owned();

    // A slowloris: half a request line, then nothing.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /v1/groups/1/top HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // A client that connects and says nothing.
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Half of HTTP/2's preface, then nothing: the server cannot yet tell which protocol it is.
    let mut preface = tokio::net::TcpStream::connect(&addr).await.unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    // A kept-alive connection that goes quiet after one answer.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    // Bounded waits, several times the timeout: what is asserted is that they close at all.
    for (name, stream) in [("slow", &mut slow), ("silent", &mut silent), ("preface", &mut preface), ("idle", &mut idle)]
    {
        assert!(closed_within(stream, Duration::from_secs(10)).await, "the {name} connection is still open");
    }
    // Meanwhile, and after, the server answers.
    assert_eq!(api.get("/v1/groups/1/top").await.0, 200);
    api.shutdown.trigger();
    env.cleanup().await;
}

#[tokio::test]
async fn a_scan_over_many_groups_keeps_the_in_memory_copies_within_their_byte_bound() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    for group in 1..=100 {
        cache_aged(&cache, group, 100, Duration::ZERO).await;
    }
    // A hundred top-100s are over half a megabyte of copies; the bound is a tenth of that.
    let bound = 64 * 1024;
    let read = ReadSettings {
        local_ttl: Duration::from_secs(600),
        local_max_bytes: bytesize::ByteSize::b(bound),
        ..read_settings()
    };
    let api = Api::start_read(cache, read).await;
    let mut most = 0;
    for group in 1..=100 {
        let (status, _, body) = api.get(&format!("/v1/groups/{group}/top")).await;
        assert_eq!((status, body["entries"].as_array().map(Vec::len)), (200, Some(100)), "group {group}");
        most = most.max(metric(&api, "ranq_read_copy_bytes").await);
    }
    assert!(most <= bound, "the copies took {most} bytes, bound {bound}");
    assert!(most > bound / 4, "the bound is used, not emptied: at most {most} bytes");
    // The copies still answer: the latest ones are kept.
    let (status, _, _) = api.get("/v1/groups/100/top").await;
    assert_eq!(status, 200);
    api.shutdown.trigger();
    env.cleanup().await;
}
