//! The OpenAPI document (docs/openapi.json, the one the server serves) against the server it
//! describes. Requests are generated from the document itself — every GET operation, each
//! parameter from its own schema, in bounds and out of them — and sent to a real server over a
//! real Redis holding fresh, stale, quarantined and absent groups. Every answer must be one the
//! document declares: a status the operation lists, a body of the declared type that validates
//! against the declared schema, no API header the status does not declare. A request within the
//! document's bounds never gets a 400, and one outside them always does, so the bounds a client
//! generated from the document enforces are exactly the server's.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Read as _;
use std::time::Duration;

use chrono::Utc;
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::{Config, TestRunner};
use ranq_cache::{GroupFailure, QuarantinePolicy};
use ranq_runtime::settings::{OnMiss, ReadSettings, Settings};
use ranq_tests::{Dialect, TestEnv};
use serde_json::Value;

use crate::http::{Api, cache_aged};

/// The headers the API itself sets, as opposed to transport (`content-length`, `date`) and the
/// headers the document describes for every answer at once (`nosniff`, CORS).
const API_HEADERS: [&str; 6] = ["x-ranq-status", "etag", "cache-control", "vary", "content-encoding", "retry-after"];

/// Group ids the generator favours, so that every kind of group is reached: fresh (1), stale
/// (2), quarantined with its last snapshot (3), absent (4), absent and quarantined (5).
const GROUPS: [i64; 5] = [1, 2, 3, 4, 5];
/// Member ids that are in those tops (members are 10 × rank).
const MEMBERS: [i64; 3] = [10, 20, 370];

/// One parameter's value in a generated request.
#[derive(Debug, Clone)]
enum Arg {
    Omitted,
    /// Within the parameter's schema.
    Valid(String),
    /// Outside it: a client built from the document would refuse to send it.
    Invalid(String),
}

#[derive(Debug, Clone)]
struct Param {
    name: String,
    location: String,
    value: Arg,
}

#[derive(Debug, Clone)]
struct Request {
    path: String,
    admin: bool,
    params: Vec<Param>,
}

impl Request {
    fn valid(&self) -> bool {
        !self.params.iter().any(|p| matches!(p.value, Arg::Invalid(_)))
    }

    fn url(&self, base: &str) -> String {
        let mut path = self.path.clone();
        let mut query = Vec::new();
        for p in &self.params {
            let (Arg::Valid(v) | Arg::Invalid(v)) = &p.value else { continue };
            let encoded: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
            match p.location.as_str() {
                "path" => path = path.replace(&format!("{{{}}}", p.name), &encoded),
                "query" => query.push(format!("{}={encoded}", p.name)),
                _ => {}
            }
        }
        if query.is_empty() { format!("{base}{path}") } else { format!("{base}{path}?{}", query.join("&")) }
    }
}

/// The values of one parameter, from its schema: valid ones, and (for numbers) invalid ones.
fn param_values(name: &str, location: &str, required: bool, schema: &Value) -> BoxedStrategy<Arg> {
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    // Weighted so that most requests are valid and reach the cache: a request is invalid as soon
    // as one of its parameters is.
    let mut options: Vec<(u32, BoxedStrategy<Arg>)> = Vec::new();
    if types.contains(&"integer") {
        let (min, max) = (schema["minimum"].as_i64(), schema["maximum"].as_i64());
        let favoured: &[i64] = if name == "member" { &MEMBERS } else { &GROUPS };
        let valid: BoxedStrategy<i64> = match (min, max) {
            (Some(min), Some(max)) => (min..=max).boxed(),
            _ => prop_oneof![3 => proptest::sample::select(favoured.to_vec()), 1 => any::<i64>()].boxed(),
        };
        options.push((6, valid.prop_map(|v| Arg::Valid(v.to_string())).boxed()));
        let mut invalid = vec!["abc".to_owned(), "1.5".to_owned(), "1e3".to_owned(), "9223372036854775808".to_owned()];
        invalid.extend(min.map(|m| (m - 1).to_string()));
        invalid.extend(max.map(|m| (m + 1).to_string()));
        if location != "path" {
            // An empty path segment is another path (a 404), not a bad value.
            invalid.push(String::new());
        }
        options.push((1, proptest::sample::select(invalid).prop_map(Arg::Invalid).boxed()));
    } else {
        let examples: Vec<&str> = match name.to_ascii_lowercase().as_str() {
            "accept-encoding" => vec!["gzip", "br", "identity", "gzip, br", "deflate", "*", "br;q=0, gzip"],
            "if-none-match" => vec!["*", "\"nope\"", "W/\"nope\""],
            _ => vec!["x"],
        };
        let examples: Vec<String> = examples.into_iter().map(str::to_owned).collect();
        options.push((3, proptest::sample::select(examples).prop_map(Arg::Valid).boxed()));
    }
    if !required {
        options.push((2, Just(Arg::Omitted).boxed()));
    }
    Union::new_weighted(options).boxed()
}

/// Every GET operation of the document, as a strategy of requests to it.
fn requests(doc: &Value) -> BoxedStrategy<Request> {
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("the document has paths") {
        let Some(get) = item.get("get") else { continue };
        let admin = get["tags"].as_array().is_some_and(|tags| tags.iter().any(|t| t == "admin"));
        let mut params = Vec::new();
        for p in get["parameters"].as_array().into_iter().flatten() {
            let (name, location) = (p["name"].as_str().unwrap().to_owned(), p["in"].as_str().unwrap().to_owned());
            let required = p["required"].as_bool().unwrap_or(false);
            params.push(param_values(&name, &location, required, &p["schema"]).prop_map(move |value| Param {
                name: name.clone(),
                location: location.clone(),
                value,
            }));
        }
        // The operations with parameters have more to explore.
        let weight = 1 + 3 * u32::try_from(params.len()).unwrap_or(1);
        let path = path.clone();
        operations.push((weight, params.prop_map(move |params| Request { path: path.clone(), admin, params }).boxed()));
    }
    Union::new_weighted(operations).boxed()
}

/// The body as sent, decoded per its `Content-Encoding`.
fn decode(encoding: Option<&str>, body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match encoding {
        None => return Ok(body.to_vec()),
        Some("gzip") => flate2::read::GzDecoder::new(body).read_to_end(&mut out).map_err(|e| e.to_string())?,
        Some("br") => brotli::Decompressor::new(body, 4096).read_to_end(&mut out).map_err(|e| e.to_string())?,
        Some(other) => return Err(format!("undeclared content-encoding {other}")),
    };
    Ok(out)
}

/// Checks one answer against the operation's declared responses; `Err` says how it differs.
fn conforms(
    doc: &Value,
    request: &Request,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let operation = &doc["paths"][&request.path]["get"];
    let Some(declared) = operation["responses"].get(status.to_string()) else {
        return Err(format!("status {status} is not declared"));
    };
    // A refusal (429, 503) comes before the request is read; otherwise the bounds decide.
    let refused = status == 429 || status == 503;
    if request.valid() && status == 400 {
        return Err("a request within the document's bounds got a 400".into());
    }
    if !request.valid() && status != 400 && !refused {
        return Err(format!("a request outside the document's bounds got {status}, not 400"));
    }
    let declared_headers: Vec<String> =
        declared["headers"].as_object().map(|h| h.keys().map(|k| k.to_ascii_lowercase()).collect()).unwrap_or_default();
    for name in API_HEADERS {
        if headers.contains_key(name) && !declared_headers.iter().any(|d| d == name) {
            return Err(format!("header {name} is sent with {status} but not declared"));
        }
    }
    let content = declared["content"].as_object();
    let Some(content) = content.filter(|c| !c.is_empty()) else {
        return if body.is_empty() {
            Ok(())
        } else {
            Err(format!("{status} declares no body, {} bytes sent", body.len()))
        };
    };
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    let Some(media_spec) = content.get(media) else {
        return Err(format!("content-type {content_type:?} is not declared for {status}"));
    };
    let body = decode(headers.get("content-encoding").and_then(|v| v.to_str().ok()), body)?;
    let instance = if media == "application/json" {
        serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?
    } else {
        Value::String(String::from_utf8(body).map_err(|_| "a text body that is not UTF-8".to_owned())?)
    };
    // The schema, with the document's components beside it so that its `$ref`s resolve.
    let mut schema = media_spec["schema"].clone();
    schema["components"] = doc["components"].clone();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| format!("the declared schema does not compile: {e}"))?;
    let errors: Vec<String> =
        validator.iter_errors(&instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    if errors.is_empty() { Ok(()) } else { Err(format!("the body does not match its schema: {errors:?}")) }
}

#[test]
fn every_answer_to_requests_generated_from_the_openapi_document_is_one_it_declares() {
    let doc: Value = serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let env = runtime.block_on(async {
        let env = TestEnv::new(Dialect::Sqlite).await;
        let cache = env.cache().await;
        cache_aged(&cache, 1, 100, Duration::ZERO).await;
        cache_aged(&cache, 2, 37, Duration::from_secs(30)).await;
        cache_aged(&cache, 3, 100, Duration::ZERO).await;
        let failures: Vec<GroupFailure> = [3, 5]
            .into_iter()
            .map(|group| GroupFailure { group, error: "relation \"scores\" does not exist".into() })
            .collect();
        let policy = QuarantinePolicy { after: 1, retry: Duration::from_secs(3600) };
        cache.record_failures(&failures, policy, Utc::now()).await.unwrap();
        env
    });
    let read = ReadSettings {
        listen: "127.0.0.1:0".into(),
        stale_after: Duration::from_secs(10),
        max_age: Duration::from_secs(600),
        on_miss: OnMiss::None,
        ..Settings::default().read
    };
    // As deployed by default, then with a per-client rate the generated requests exceed.
    let limited = ReadSettings { client_rate: 50, client_burst: 10, ..read.clone() };
    let mut seen = Vec::new();
    for read in [read, limited] {
        let api = runtime.block_on(async { Api::start_read(env.cache().await, read).await });
        let outcome = check_against(&doc, &runtime, &api);
        api.shutdown.trigger();
        match outcome {
            Ok(statuses) => seen.push(statuses),
            Err(failure) => {
                runtime.block_on(env.cleanup());
                panic!("{failure}");
            }
        }
    }
    runtime.block_on(env.cleanup());
    println!("statuses seen per operation: {seen:?}");
    // The generator reached what it is meant to: every operation, and each leaderboard answer.
    for path in doc["paths"].as_object().unwrap().keys() {
        assert!(seen[0].keys().any(|(p, _)| p == path), "no request reached {path}");
    }
    let top = "/v1/groups/{group}/top".to_owned();
    for status in [200, 304, 400, 404] {
        assert!(seen[0].contains_key(&(top.clone(), status)), "no top answer was a {status}");
    }
    assert!(seen[1].contains_key(&(top, 429)), "the rate limit refused no request");
}

/// Runs the generated requests against `api`; the statuses seen per operation, or the first
/// answer that is not one the document declares (shrunk to its simplest request).
fn check_against(
    doc: &Value,
    runtime: &tokio::runtime::Runtime,
    api: &Api,
) -> Result<BTreeMap<(String, u16), usize>, String> {
    let seen: RefCell<BTreeMap<(String, u16), usize>> = RefCell::default();
    let mut runner = TestRunner::new(Config { cases: 400, failure_persistence: None, ..Config::default() });
    let outcome = runner.run(&requests(doc), |request| {
        let url = request.url(if request.admin { &api.admin } else { &api.base });
        let mut builder = api.http.get(&url);
        for p in request.params.iter().filter(|p| p.location == "header") {
            if let Arg::Valid(v) | Arg::Invalid(v) = &p.value {
                builder = builder.header(&p.name, v);
            }
        }
        let (status, headers, body) = runtime.block_on(async {
            let response = builder.send().await.expect("the server answers");
            let (status, headers) = (response.status().as_u16(), response.headers().clone());
            (status, headers, response.bytes().await.unwrap_or_default())
        });
        *seen.borrow_mut().entry((request.path.clone(), status)).or_default() += 1;
        if let Err(mismatch) = conforms(doc, &request, status, &headers, &body) {
            return Err(TestCaseError::fail(format!(
                "GET {url} {request:?}: {mismatch}\n{headers:?}\n{}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(())
    });
    outcome.map_err(|failure| failure.to_string())?;
    Ok(seen.into_inner())
}
