//! The three phases of the road in docs/architecture-comparison.md, each run from its file under
//! `config/` as the page tells users to run it, and checked for the behaviour the page promises:
//!
//! 1. `config/phase1.toml`, serve and worker, no producer: a MISS waits for its refresh and
//!    answers FRESH, and an expired group is a MISS again, never STALE;
//! 2. `config/phase2.toml`, the same processes: past the TTL a read answers STALE at once and the
//!    group is refreshed behind it;
//! 3. `config/phase3.toml`, producer and worker, no reads at all: every group is kept FRESH.
//!
//! Only the clock is changed, by the environment (the files' minutes become seconds, and a MISS
//! may wait longer than the file's two seconds on a loaded machine), so a test takes seconds;
//! every other setting is the file's, and the relations between the file's durations that define
//! its phase are checked on the file itself.

use std::path::PathBuf;
use std::time::Duration;

use ranq_core::Entry;
use ranq_tests::{Dialect, Proc, TestEnv, eventually, execute, free_port, truth};
use serde_json::Value;

const GROUPS: i64 = 20;

fn phase(n: u8) -> PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../config/phase{n}.toml"));
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// `ranq <args>` with the phase's file.
fn ranq(env: &TestEnv, file: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut cmd = env.ranq();
    cmd.arg("--config").arg(file).args(args);
    cmd
}

/// `ranq status --json`, as an operator reads it.
fn status(env: &TestEnv, file: &std::path::Path) -> Value {
    let out = ranq(env, file, &["status", "--json"]).output().unwrap();
    assert!(out.status.success(), "ranq status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value the file gives `key`, as `ranq config show --json` reports it.
fn setting(env: &TestEnv, file: &std::path::Path, key: &str) -> Value {
    let out = ranq(env, file, &["config", "show", "--json"]).output().unwrap();
    assert!(out.status.success(), "ranq config show: {}", String::from_utf8_lossy(&out.stderr));
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let found = all.into_iter().find(|s| s["key"] == key).unwrap_or_else(|| panic!("no {key} in config show"));
    assert_eq!(found["source"], "file", "{} does not set {key}: {found}", file.display());
    found["value"].clone()
}

/// A MISS's wait in these tests: the file's, or longer on a loaded machine.
const MISS_WAIT: (&str, &str) = ("RANQ_READ__MISS_WAIT", "4s");

/// One read of a group's top-100 through the API: the HTTP status and the body.
async fn read(http: &reqwest::Client, base: &str, group: i64) -> (u16, Value) {
    let response = http.get(format!("{base}/v1/groups/{group}/top")).send().await.unwrap();
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

fn entries(body: &Value) -> Vec<Entry> {
    serde_json::from_value(body["entries"].clone()).unwrap_or_else(|e| panic!("no entries in {body}: {e}"))
}

/// The on-demand phases' processes: a worker and a read server, both from `file`, the server's
/// freshness limits set by `clock` (variable, value) pairs. Returns them once the worker is
/// registered and the server ready, so the first read meets a fleet that can refresh.
async fn on_demand(env: &TestEnv, file: &std::path::Path, clock: &[(&str, &str)]) -> (Vec<Proc>, String) {
    let worker = Proc::spawn("worker", ranq(env, file, &["worker"]));
    let port = free_port();
    let mut cmd = ranq(env, file, &["serve", "--listen", &format!("127.0.0.1:{port}")]);
    cmd.envs(clock.iter().copied());
    let serve = Proc::spawn("serve", cmd);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(30), "the worker registered and the server ready", || async {
        let ready = http.get(format!("{base}/readyz")).send().await.ok()?.status() == 200;
        (ready && status(env, file)["workers"]["alive"] == 1).then_some(())
    })
    .await;
    (vec![worker, serve], base)
}

fn stop(procs: &mut [Proc]) {
    for proc in procs {
        let exit = proc.terminate(Duration::from_secs(30));
        assert!(exit.success(), "{} exited with {exit}", proc.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase_1_a_miss_waits_for_its_refresh_and_answers_fresh() {
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(GROUPS as u32, 30).await;
    let sql = env.sql().await;
    let file = phase(1);
    // Phase 1 has no stale window, and its MISS waits for the refresh it asked for.
    assert_eq!(setting(&env, &file, "read.stale_after"), setting(&env, &file, "read.max_age"));
    assert_eq!(setting(&env, &file, "read.on_miss"), "refresh");
    assert_ne!(setting(&env, &file, "read.miss_wait"), "0s");
    // The file's TTL of a minute, as three seconds.
    let ttl = [("RANQ_READ__STALE_AFTER", "3s"), ("RANQ_READ__MAX_AGE", "3s"), MISS_WAIT];
    let (mut procs, base) = on_demand(&env, &file, &ttl).await;
    let http = reqwest::Client::new();

    // Nothing is cached before it is read; the first read of a group waits for it.
    assert_eq!(status(&env, &file)["groups"]["cached"], 0);
    let (code, body) = read(&http, &base, 3).await;
    assert_eq!((code, &body["status"]), (200, &Value::from("FRESH")), "{body}");
    assert_eq!(entries(&body), truth(&sql, 3).await);
    assert_eq!(status(&env, &file)["groups"]["cached"], 1, "only the group read was computed");

    // Expired, the group is a MISS again: its next reader waits for the new scores.
    execute(&sql, "UPDATE ranq_scores SET score = score + 7 * member_id, updated_at = now() WHERE group_id = 3").await;
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let (code, body) = read(&http, &base, 3).await;
    assert_eq!((code, &body["status"]), (200, &Value::from("FRESH")), "{body}");
    assert_eq!(entries(&body), truth(&sql, 3).await, "the expired group was answered with old scores");

    stop(&mut procs);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase_2_past_the_ttl_a_read_answers_stale_at_once_and_is_refreshed_behind() {
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(GROUPS as u32, 30).await;
    let sql = env.sql().await;
    let file = phase(2);
    assert_eq!(setting(&env, &file, "read.on_miss"), "refresh");
    assert_ne!(setting(&env, &file, "read.miss_wait"), "0s");
    // The file's TTL of a minute, as two seconds; the hard limit stays the file's ten minutes.
    let (mut procs, base) = on_demand(&env, &file, &[("RANQ_READ__STALE_AFTER", "2s"), MISS_WAIT]).await;
    let http = reqwest::Client::new();

    let (code, body) = read(&http, &base, 5).await;
    assert_eq!((code, &body["status"]), (200, &Value::from("FRESH")), "{body}");
    let before = truth(&sql, 5).await;
    assert_eq!(entries(&body), before);

    execute(&sql, "UPDATE ranq_scores SET score = score + 11 * member_id, updated_at = now() WHERE group_id = 5").await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (code, body) = read(&http, &base, 5).await;
    assert_eq!((code, &body["status"]), (200, &Value::from("STALE")), "{body}");
    assert_eq!(entries(&body), before, "a STALE answer is the data held, sent without waiting");

    // No producer runs: the refresh behind that answer is what brings the new scores.
    let after = truth(&sql, 5).await;
    assert_ne!(after, before);
    eventually(Duration::from_secs(20), "group 5 refreshed behind its STALE answer", || async {
        let (code, body) = read(&http, &base, 5).await;
        (code == 200 && body["status"] == "FRESH" && entries(&body) == after).then_some(())
    })
    .await;

    stop(&mut procs);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase_3_the_producer_keeps_every_group_fresh_with_no_reads() {
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(GROUPS as u32, 30).await;
    let sql = env.sql().await;
    let file = phase(3);
    assert_eq!(setting(&env, &file, "producer.mode"), "all");
    // The file's tick of a minute, as two seconds. No read server: nobody reads.
    let mut procs = vec![
        Proc::spawn("producer", ranq(&env, &file, &["producer", "--schedule", "*/2 * * * * *"])),
        Proc::spawn("worker", ranq(&env, &file, &["worker"])),
    ];

    // Judged with a FRESH window of three seconds, a tick and a half: only a producer that keeps
    // ticking keeps every group inside it, long after the first tick.
    let fresh_for_3s = |env: &TestEnv| {
        let mut cmd = ranq(env, &file, &["status", "--json"]);
        cmd.env("RANQ_READ__STALE_AFTER", "3s");
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "ranq status: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    eventually(Duration::from_secs(60), "every group FRESH after the fourth tick", || async {
        let s = fresh_for_3s(&env);
        let ticks = s["ticks"]["enqueued"].as_u64().unwrap_or(0);
        (ticks >= 4 && s["groups"]["cached"] == GROUPS && s["groups"]["fresh"] == GROUPS).then_some(())
    })
    .await;

    // A change in the database reaches the cache at a later tick, still with no reader.
    execute(&sql, "UPDATE ranq_scores SET score = score + 13 * member_id, updated_at = now() WHERE group_id = 8").await;
    let after = truth(&sql, 8).await;
    eventually(Duration::from_secs(30), "group 8's new scores cached by a tick", || async {
        let out = ranq(&env, &file, &["get", "8", "--json"]).output().ok()?;
        let body: Value = serde_json::from_slice(&out.stdout).ok()?;
        (body["status"] == "FRESH" && entries(&body) == after).then_some(())
    })
    .await;
    assert!(status(&env, &file)["ticks"]["enqueued"].as_u64().unwrap() >= 2);

    stop(&mut procs);
    env.cleanup().await;
}
