//! A fleet on Redis Sentinel follows the master through failovers by itself: first one the
//! sentinels are asked for (`SENTINEL FAILOVER`), then the new master SIGKILLed. Each time every
//! group converges to the SQL truth, no role restarts, and nothing lands in the dead letter; the
//! time from each failover to convergence is printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ranq_faults::sentinel::{Protection, Sentinels, ServerTls};
use ranq_tests::reads::{all_true, reader};
use ranq_tests::tls::TestCa;
use ranq_tests::{Dialect, Proc, Sql, TestEnv, eventually, execute, free_port, truth};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_follows_the_master_through_two_sentinel_failovers_and_loses_nothing() {
    const GROUPS: i64 = 60;
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(GROUPS as u32, 20).await;
    let sql = env.sql().await;
    let mut sentinels = Sentinels::start(&env.dir.join("sentinel")).await.expect("a Sentinel deployment starts");
    let url = sentinels.url();
    let fleet = |args: &[&str]| {
        let mut cmd = env.ranq();
        cmd.args(args).env("REDIS_URL", &url);
        cmd
    };
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut roles = vec![
        Proc::spawn("producer", fleet(&["producer", "--schedule", "* * * * * *"])),
        Proc::spawn("worker-1", fleet(&["worker"])),
        Proc::spawn("worker-2", fleet(&["worker"])),
        Proc::spawn("serve", fleet(&["serve", "--listen", &format!("127.0.0.1:{port}")])),
    ];
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(60), "every group FRESH and true on the first master", || async {
        all_true(&http, &base, &sql, GROUPS).await.then_some(())
    })
    .await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (reading, answers) = reader(base.clone(), GROUPS, stop.clone());

    // 1. The sentinels are asked to fail over; the old master becomes a replica of the new one.
    let old = sentinels.failover().await.unwrap();
    let started = Instant::now();
    let promoted = sentinels.wait_for_new_master(old).await.unwrap();
    execute(&sql, "UPDATE ranq_scores SET score = score + (member_id * 13) % 997 WHERE group_id % 2 = 0").await;
    eventually(Duration::from_secs(90), "every group true after SENTINEL FAILOVER", || async {
        all_true(&http, &base, &sql, GROUPS).await.then_some(())
    })
    .await;
    eprintln!("SENTINEL FAILOVER: every group true {:?} after it was asked for", started.elapsed());

    // 2. The new master dies without a word; the sentinels promote the other node again.
    sentinels.kill(promoted);
    let started = Instant::now();
    sentinels.wait_for_new_master(promoted).await.unwrap();
    execute(&sql, "UPDATE ranq_scores SET score = score + (member_id * 7) % 991 WHERE group_id % 2 = 1").await;
    eventually(Duration::from_secs(90), "every group true after the new master was killed", || async {
        all_true(&http, &base, &sql, GROUPS).await.then_some(())
    })
    .await;
    eprintln!("master SIGKILLed: every group true {:?} after the kill", started.elapsed());

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reading.await.unwrap();
    let answers = answers.lock().unwrap().clone();
    eprintln!("reads during the failovers, by answer: {answers:?}");
    let status: Value = serde_json::from_slice(&fleet(&["status", "--json"]).output().unwrap().stdout).unwrap();
    assert_eq!(status["queue"]["dead"], 0, "nothing in the dead letter: {status}");
    for role in &mut roles {
        assert!(role.is_running(), "{} never restarted or stopped", role.name);
    }
    let served_badly: u64 = answers.iter().filter(|(a, _)| !a.starts_with("200")).map(|(_, n)| n).sum();
    assert_eq!(served_badly, 0, "every read was served, FRESH or STALE: {answers:?}");
    for role in &mut roles {
        assert!(role.terminate(Duration::from_secs(20)).success(), "{} stops cleanly", role.name);
    }
    env.cleanup().await;
}

/// Starts a worker with `ranq`'s connection, refreshes the three seeded groups through it with
/// `ranq refresh --wait`, and checks that `ranq get` reads each back equal to the SQL truth.
/// Returns the worker, still running.
async fn refreshes_and_reads_true(sql: &Sql, ranq: impl Fn(&[&str]) -> std::process::Command) -> Proc {
    let worker = Proc::spawn("worker", ranq(&["worker"]));
    let refreshed = ranq(&["refresh", "1", "2", "3", "--wait"]).output().unwrap();
    assert!(refreshed.status.success(), "refresh: {}", String::from_utf8_lossy(&refreshed.stderr));
    for group in 1..=3 {
        let got = ranq(&["get", &group.to_string(), "--json"]).output().unwrap();
        let body: Value = serde_json::from_slice(&got.stdout).expect("get --json prints JSON");
        let entries: Vec<ranq_core::Entry> = serde_json::from_value(body["entries"].clone()).unwrap();
        assert_eq!(entries, truth(sql, group).await, "group {group}");
    }
    worker
}

/// Managed Sentinel deployments protect the sentinels and the data nodes with a password: the
/// URL's credentials reach both, and credentials that are wrong or missing are a configuration
/// error (exit code 2) that names the fix and never prints the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_sentinel_deployment_is_reached_with_the_urls_credentials() {
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(3, 10).await;
    let sql = env.sql().await;
    let protection = Protection { password: Some("s3cret-pw".into()), tls: None };
    let sentinels = Sentinels::start_with(&env.dir.join("sentinel"), protection)
        .await
        .expect("a password-protected Sentinel deployment starts");
    let url = sentinels.url();
    let with = |url: &str, args: &[&str]| {
        let mut cmd = env.ranq();
        cmd.args(args).env("REDIS_URL", url);
        cmd
    };
    let mut worker = refreshes_and_reads_true(&sql, |args| with(&url, args)).await;

    for (url, what) in
        [(url.replace("s3cret-pw", "wrong-pw"), "a wrong password"), (url.replace(":s3cret-pw@", ""), "no password")]
    {
        let refused = with(&url, &["status"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{what} is a configuration error: {stderr}");
        assert!(stderr.contains("refused the credentials"), "{what}: {stderr}");
        assert!(
            !stderr.contains("wrong-pw") && !stderr.contains("s3cret-pw"),
            "{what}: the password never shows: {stderr}"
        );
    }
    // A named ACL user reaches sentinels that know only a password; one without `+role` is told
    // what to grant.
    let master = sentinels.master_port().await.unwrap();
    let mut acl = redis::cmd("ACL");
    acl.arg("SETUSER").arg("norole").arg("on").arg(">s3cret-pw").arg("~*").arg("&*").arg("+@all").arg("-role");
    sentinels.query::<()>(master, &acl).await.unwrap();
    let no_role = with(&url.replace(":s3cret-pw@", "norole:s3cret-pw@"), &["status"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&no_role.stderr);
    assert_eq!(no_role.status.code(), Some(2), "a user without +role is a configuration error: {stderr}");
    assert!(stderr.contains("refused a command to this user"), "{stderr}");

    let unknown = with(&url.replace("/ranqmaster", "/nosuchmaster"), &["status"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(2), "a master name no sentinel knows is a configuration error: {stderr}");
    assert!(stderr.contains("knows a master named \"nosuchmaster\""), "{stderr}");
    let away = with(&format!("redis+sentinel://127.0.0.1:{}/ranqmaster", free_port()), &["status"]).output().unwrap();
    assert_eq!(away.status.code(), Some(1), "sentinels that are away are a runtime failure");

    assert!(worker.terminate(Duration::from_secs(20)).success(), "the worker stops cleanly");
    env.cleanup().await;
}

/// Sentinel over TLS (`rediss+sentinel://`): the sentinels and the data nodes speak TLS only, the
/// certificates verify against `redis.tls_ca_file`, and a CA that did not sign them is a
/// configuration error (exit code 2) naming the file to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_only_sentinel_deployment_is_reached_and_verified_with_the_configured_ca() {
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(3, 10).await;
    let sql = env.sql().await;
    let ca = TestCa::new(&env.dir.join("ca"), "sentinel");
    let other = TestCa::new(&env.dir.join("other-ca"), "other");
    let tls = ServerTls { cert: ca.dir.join("server.pem"), key: ca.dir.join("server.key"), ca: ca.dir.join("ca.pem") };
    let sentinels = Sentinels::start_with(&env.dir.join("sentinel"), Protection { password: None, tls: Some(tls) })
        .await
        .expect("a TLS-only Sentinel deployment starts");
    let url = sentinels.url();
    assert!(url.starts_with("rediss+sentinel://"), "{url}");
    let with = |ca_file: &std::path::Path, args: &[&str]| {
        let mut cmd = env.ranq();
        cmd.args(args).env("REDIS_URL", &url).env("RANQ_REDIS__TLS_CA_FILE", ca_file);
        cmd
    };
    let ca_file = ca.dir.join("ca.pem");
    let mut worker = refreshes_and_reads_true(&sql, |args| with(&ca_file, args)).await;

    let refused = with(&other.dir.join("ca.pem"), &["status"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "a CA that did not sign the servers is a configuration error: {stderr}");
    assert!(stderr.contains("TLS to Redis") && stderr.contains("redis.tls_ca_file"), "{stderr}");

    assert!(worker.terminate(Duration::from_secs(20)).success(), "the worker stops cleanly");
    env.cleanup().await;
}
