//! Reads through a running `ranq serve`, as a client would: whether every group is served FRESH
//! and true, and a reader that keeps asking and counts its answers, for the failover tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::{Sql, truth};

/// Whether every group is served FRESH and equal to the SQL truth.
pub async fn all_true(http: &reqwest::Client, base: &str, sql: &Sql, groups: i64) -> bool {
    for group in 1..=groups {
        let Ok(response) = http.get(format!("{base}/v1/groups/{group}/top")).send().await else { return false };
        let Ok(body) = response.json::<Value>().await else { return false };
        let entries: Vec<ranq_core::Entry> = serde_json::from_value(body["entries"].clone()).unwrap_or_default();
        if body["status"] != "FRESH" || entries != truth(sql, group).await {
            return false;
        }
    }
    true
}

/// Reads a group every 20 ms until told to stop, counting the answers by status code and
/// `X-Ranq-Status`.
pub fn reader(
    base: String,
    groups: i64,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<BTreeMap<String, u64>>>) {
    let seen: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let counts = seen.clone();
    let task = tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let mut n = 0i64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            let answer = match http.get(format!("{base}/v1/groups/{}/top", 1 + n % groups)).send().await {
                Ok(r) => {
                    let status =
                        r.headers().get("x-ranq-status").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
                    format!("{} {status}", r.status().as_u16())
                }
                Err(_) => "unanswered".to_owned(),
            };
            *counts.lock().unwrap().entry(answer).or_default() += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (task, seen)
}
