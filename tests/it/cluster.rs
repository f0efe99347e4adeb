//! The whole fleet on a real Redis Cluster (three masters, a replica each): refreshes, reads and
//! `status` as on one Redis, the snapshots spread over every master, and then two master
//! failovers — one asked for (`CLUSTER FAILOVER` on a replica), one a SIGKILL of another master
//! whose replica takes over. Each time every group converges to the SQL truth; no role restarts,
//! nothing lands in the dead letter, every read is served; the times to converge are printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ranq_launch::RedisCluster;
use ranq_tests::reads::{all_true, reader};
use ranq_tests::{Dialect, Proc, TestEnv, eventually, execute, free_port};
use serde_json::Value;

/// How many keys of the namespace each master holds.
fn keys_per_master(masters: &[u16], namespace: &str) -> Vec<usize> {
    masters
        .iter()
        .map(|&port| {
            let out = RedisCluster::cli(port, &["--scan", "--pattern", &format!("{namespace}:top:*")]).unwrap();
            out.lines().filter(|l| !l.is_empty()).count()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_runs_on_redis_cluster_and_follows_two_master_failovers() {
    const GROUPS: i64 = 60;
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(GROUPS as u32, 20).await;
    let sql = env.sql().await;
    let mut cluster = tokio::task::spawn_blocking(RedisCluster::start).await.unwrap().expect("a Redis Cluster starts");
    let url = cluster.url();
    // A command caught by the kill may wait out its 10 s timeout during the drain; the drain's
    // own bound is what the roles are held to when they stop.
    let fleet = |args: &[&str]| {
        let mut cmd = env.ranq();
        cmd.args(args).env("REDIS_URL", &url).env("RANQ_SHUTDOWN_TIMEOUT", "5s");
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
    let started = Instant::now();
    eventually(Duration::from_secs(60), "every group FRESH and true on the cluster", || async {
        all_true(&http, &base, &sql, GROUPS).await.then_some(())
    })
    .await;
    eprintln!("cluster: every group true {:?} after the fleet started", started.elapsed());

    // The snapshots are spread over the masters by their group tags.
    let pairs = cluster.pairs().unwrap();
    assert_eq!(pairs.len(), 3, "three masters, each with a replica: {pairs:?}");
    let masters: Vec<u16> = pairs.iter().map(|(m, _)| *m).collect();
    let spread = keys_per_master(&masters, &env.namespace);
    assert_eq!(spread.iter().sum::<usize>(), GROUPS as usize, "every snapshot on some master: {spread:?}");
    assert!(spread.iter().all(|&n| n > 0), "every master holds snapshots: {spread:?}");

    // `status` reads the whole cluster.
    let status: Value = serde_json::from_slice(&fleet(&["status", "--json"]).output().unwrap().stdout).unwrap();
    assert_eq!(status["groups"]["cached"], GROUPS, "{status}");
    assert!(status["leader"]["id"].is_string(), "a leader: {status}");
    assert_eq!(status["workers"]["alive"], 2, "both workers seen: {status}");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (reading, answers) = reader(base.clone(), GROUPS, stop.clone());

    // 1. A replica takes over its master, asked to (`CLUSTER FAILOVER`).
    let (old_master, replica) = pairs[0];
    RedisCluster::cli(replica, &["CLUSTER", "FAILOVER"]).unwrap();
    let started = Instant::now();
    eventually(Duration::from_secs(30), "the replica promoted", || async {
        (RedisCluster::is_master(replica) && !RedisCluster::is_master(old_master)).then_some(())
    })
    .await;
    execute(&sql, "UPDATE ranq_scores SET score = score + (member_id * 13) % 997 WHERE group_id % 2 = 0").await;
    eventually(Duration::from_secs(90), "every group true after CLUSTER FAILOVER", || async {
        all_true(&http, &base, &sql, GROUPS).await.then_some(())
    })
    .await;
    eprintln!("CLUSTER FAILOVER: every group true {:?} after it was asked for", started.elapsed());

    // 2. Another master dies without a word; its replica is elected in its place.
    let (victim, heir) = pairs[1];
    cluster.kill(victim);
    let started = Instant::now();
    eventually(Duration::from_secs(60), "the dead master's replica promoted", || async {
        RedisCluster::is_master(heir).then_some(())
    })
    .await;
    eprintln!("master SIGKILLed: its replica promoted {:?} after the kill", started.elapsed());
    execute(&sql, "UPDATE ranq_scores SET score = score + (member_id * 7) % 991 WHERE group_id % 2 = 1").await;
    eventually(Duration::from_secs(90), "every group true after a master was killed", || async {
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
    let unanswered: u64 =
        answers.iter().filter(|(a, _)| a.starts_with('5') || *a == "unanswered").map(|(_, n)| n).sum();
    assert_eq!(unanswered, 0, "every read was served, FRESH or STALE: {answers:?}");
    for role in &mut roles {
        assert!(role.terminate(Duration::from_secs(20)).success(), "{} stops cleanly", role.name);
    }
    drop(cluster);
    env.cleanup().await;
}
