//! Producers as real processes: with two running, each tick is enqueued once; when
//! the leader is SIGKILLed the standby takes over within the lease, and no dirty mark is lost.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ranq_tests::{Dialect, Proc, TestEnv, eventually};
use serde_json::Value;

const LEASE_TTL: &str = "3s";

fn start_producer(env: &TestEnv, name: &str, mode: &str) -> Proc {
    let mut cmd = env.ranq();
    cmd.args(["producer", "--schedule", "* * * * * *", "--mode", mode, "--sweep-every", "0"]);
    cmd.env("RANQ_PRODUCER__LEASE_TTL", LEASE_TTL);
    Proc::spawn(name, cmd)
}

fn status(env: &TestEnv) -> Value {
    let out = env.ranq().args(["status", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The leader's holder id is `producer-<host>-<pid>-<start ms>`.
fn leader_pid(leader: &Value) -> i32 {
    let id = leader["id"].as_str().unwrap();
    id.rsplit('-').nth(1).unwrap().parse().unwrap()
}

async fn current_leader(env: &TestEnv) -> Value {
    eventually(Duration::from_secs(10), "a producer leads", || async {
        let leader = status(env)["leader"].clone();
        (!leader.is_null()).then_some(leader)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_producers_enqueue_each_tick_once_and_a_standby_takes_over_from_a_killed_leader() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    env.seed(20, 2).await;
    let mut producers = [start_producer(&env, "producer-1", "all"), start_producer(&env, "producer-2", "all")];
    let first = current_leader(&env).await;
    // Both run side by side for a while (the leader ticking every second), then the leader dies.
    tokio::time::sleep(Duration::from_secs(12)).await;

    kill(Pid::from_raw(leader_pid(&first)), Signal::SIGKILL).unwrap();
    let second = eventually(Duration::from_secs(10), "the standby takes over", || async {
        let leader = status(&env)["leader"].clone();
        (!leader.is_null() && leader["id"] != first["id"]).then_some(leader)
    })
    .await;
    assert!(second["token"].as_u64() > first["token"].as_u64(), "{first} then {second}");
    // The new leader enqueues: the last tick moves on.
    let tick_after_takeover = status(&env)["last_tick"]["id"].clone();
    eventually(Duration::from_secs(5), "the new leader enqueues ticks", || async {
        (status(&env)["last_tick"]["id"] != tick_after_takeover).then_some(())
    })
    .await;

    let now = status(&env);
    let enqueued = now["ticks"]["enqueued"].as_u64().unwrap();
    assert!(
        now["ticks"]["missed"].as_u64().unwrap() >= 1,
        "the ticks between the kill and the takeover are missed: {now}"
    );
    let cache = env.cache().await;
    let mut conn = env.redis().await;
    let claims: Vec<String> =
        redis::cmd("KEYS").arg(cache.keys().tick_claim("*")).query_async(&mut conn).await.unwrap();
    // A claim is one SET NX per scheduled time: as many claims as enqueued ticks means no tick
    // was enqueued twice, by either producer.
    assert_eq!(claims.len() as u64, enqueued, "every enqueued tick was claimed exactly once");

    for p in &mut producers {
        if p.is_running() {
            assert!(p.terminate(Duration::from_secs(15)).success(), "{} did not stop cleanly", p.name);
        }
    }
    assert!(status(&env)["leader"].is_null(), "SIGTERM releases the lease");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_dirty_mark_is_lost_when_the_leader_is_killed_while_marks_arrive() {
    const GROUPS: i64 = 2_000;
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(GROUPS as u32, 3).await;
    let mut worker = {
        let mut cmd = env.ranq();
        cmd.arg("worker");
        Proc::spawn("worker", cmd)
    };
    let producers = [start_producer(&env, "producer-1", "dirty"), start_producer(&env, "producer-2", "dirty")];
    let cache = env.cache().await;
    // The first leader finds the cache empty and sweeps every group.
    eventually(Duration::from_secs(30), "the initial sweep fills the cache", || async {
        (cache.cached_groups().await.ok()?.len() == GROUPS as usize).then_some(())
    })
    .await;
    let first = current_leader(&env).await;

    // Mark every group one by one, each after noting when; kill the leader half-way.
    let mut marked_at = Vec::with_capacity(GROUPS as usize);
    let mut conn = env.redis().await;
    for group in 1..=GROUPS {
        marked_at.push(chrono::Utc::now().timestamp_micros());
        redis::cmd("SADD").arg(cache.keys().dirty()).arg(group).query_async::<()>(&mut conn).await.unwrap();
        if group == GROUPS / 2 {
            kill(Pid::from_raw(leader_pid(&first)), Signal::SIGKILL).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    let groups: Vec<i64> = (1..=GROUPS).collect();
    eventually(Duration::from_secs(40), "every marked group refreshed after its mark", || async {
        let versions = cache.fence_versions(&groups).await.ok()?;
        versions.iter().zip(&marked_at).all(|(v, at)| v.is_some_and(|v| v > *at)).then_some(())
    })
    .await;
    assert!(worker.is_running(), "the worker survived");
    // Processes go first, or they would write into the namespace after it was cleaned.
    drop((worker, producers));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_rebuilds_the_cache_after_redis_loses_the_namespace() {
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(300, 5).await;
    let mut worker = {
        let mut cmd = env.ranq();
        cmd.arg("worker");
        Proc::spawn("worker", cmd)
    };
    let mut producer = start_producer(&env, "producer", "dirty");
    let cache = env.cache().await;
    let full = || async { (cache.cached_groups().await.ok()?.len() == 300).then_some(()) };
    eventually(Duration::from_secs(30), "the first sweep fills the cache", full).await;

    // Everything under the namespace vanishes: snapshots, queue, lease, worker registrations.
    let mut conn = env.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg(cache.keys().all_pattern()).query_async(&mut conn).await.unwrap();
    redis::cmd("DEL").arg(&keys).query_async::<()>(&mut conn).await.unwrap();

    eventually(Duration::from_secs(30), "the cache is rebuilt without a restart", full).await;
    cache.mark_dirty(&[42]).await.unwrap();
    let marked = chrono::Utc::now().timestamp_micros();
    eventually(Duration::from_secs(15), "dirty marks work again", || async {
        cache.fence_versions(&[42]).await.ok()?[0].filter(|v| *v > marked)
    })
    .await;
    assert!(worker.is_running() && producer.is_running(), "no process had to be restarted");
    drop((worker, producer));
    env.cleanup().await;
}

/// Postgres announces the change (`LISTEN/NOTIFY`); MariaDB and SQLite append it to the outbox,
/// which the leader drains at its next tick.
async fn a_score_change_reaches_the_cache_through_the_change_feed_in_dirty_mode(dialect: Dialect) {
    let env = TestEnv::new(dialect).await;
    env.seed(50, 20).await;
    let out = env.ranq().args(["migrate", "--with-triggers"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let worker = {
        let mut cmd = env.ranq();
        cmd.arg("worker");
        Proc::spawn("worker", cmd)
    };
    let producer = start_producer(&env, "producer", "dirty");
    let cache = env.cache().await;
    eventually(Duration::from_secs(30), "the first sweep fills the cache", || async {
        (cache.cached_groups().await.ok()?.len() == 50).then_some(())
    })
    .await;
    // The group this test watches must have its fence written too, not only be listed.
    let untouched = eventually(Duration::from_secs(10), "group 8 is fenced", || async {
        cache.fence_versions(&[8]).await.ok()?[0]
    })
    .await;

    let sql = env.sql().await;
    let changed_at = chrono::Utc::now().timestamp_micros();
    ranq_tests::execute(&sql, "UPDATE ranq_scores SET score = score + 100000 WHERE group_id = 7 AND member_id = 3")
        .await;
    let expected = ranq_tests::truth(&sql, 7).await;
    assert_eq!(expected[0].member, 3);
    eventually(Duration::from_secs(10), "the change reaches the cache", || async {
        let s = cache.snapshot(7).await.ok()??;
        (s.version > changed_at && s.entries == expected).then_some(())
    })
    .await;
    assert_eq!(cache.fence_versions(&[8]).await.unwrap()[0], Some(untouched), "only the changed group was refreshed");
    drop((worker, producer));
    env.cleanup().await;
}

on_each_dialect!(a_score_change_reaches_the_cache_through_the_change_feed_in_dirty_mode, multi_thread, [
    postgres => Postgres, mariadb => MariaDb, sqlite => Sqlite
]);

/// `ranq_ticks_total{outcome="enqueued"}` of the producer serving metrics on `port`.
async fn ticks_enqueued_by(port: u16) -> u64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(r#"ranq_ticks_total{outcome="enqueued"} "#))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// R2: a leader paused past its lease (SIGSTOP, as a long GC pause or a frozen VM would) is
/// replaced, and once it resumes it enqueues nothing — its fencing token is stale — and stands by
/// instead of fighting for the lease; the gap is counted as missed ticks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_enqueues_nothing_after_it_resumes() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    env.seed(10, 2).await;
    let ports = [ranq_tests::free_port(), ranq_tests::free_port()];
    let mut producers: Vec<Proc> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let mut cmd = env.ranq();
            cmd.args(["producer", "--schedule", "* * * * * *", "--metrics-listen", &format!("127.0.0.1:{port}")]);
            cmd.env("RANQ_PRODUCER__LEASE_TTL", LEASE_TTL);
            Proc::spawn(&format!("producer-{i}"), cmd)
        })
        .collect();
    let first = current_leader(&env).await;
    let paused = leader_pid(&first);
    let paused_port = ports[producers.iter().position(|p| p.pid().as_raw() == paused).unwrap()];
    eventually(Duration::from_secs(10), "the leader enqueues a tick", || async {
        (ticks_enqueued_by(paused_port).await >= 1).then_some(())
    })
    .await;
    let before_pause = ticks_enqueued_by(paused_port).await;

    kill(Pid::from_raw(paused), Signal::SIGSTOP).unwrap();
    let second = eventually(Duration::from_secs(15), "the standby takes over from the paused leader", || async {
        let leader = status(&env)["leader"].clone();
        (!leader.is_null() && leader["id"] != first["id"]).then_some(leader)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    kill(Pid::from_raw(paused), Signal::SIGCONT).unwrap();
    // Its scheduler fires the ticks it slept through; every one must be refused.
    tokio::time::sleep(Duration::from_secs(4)).await;

    assert_eq!(ticks_enqueued_by(paused_port).await, before_pause, "the resumed leader enqueued a tick");
    let now = status(&env);
    assert_eq!(now["leader"]["id"], second["id"], "the resumed producer stands by: {now}");
    assert!(now["ticks"]["missed"].as_u64().unwrap() >= 1, "the paused seconds are missed ticks: {now}");
    for p in &mut producers {
        assert!(p.is_running(), "{} exited", p.name);
        assert!(p.terminate(Duration::from_secs(15)).success(), "{} did not stop cleanly", p.name);
    }
    // Counted once the producers stopped: a running leader claims a tick every second, between
    // any two reads.
    let now = status(&env);
    let cache = env.cache().await;
    let claims: Vec<String> =
        redis::cmd("KEYS").arg(cache.keys().tick_claim("*")).query_async(&mut env.redis().await).await.unwrap();
    assert_eq!(claims.len() as u64, now["ticks"]["enqueued"].as_u64().unwrap(), "each tick enqueued once: {now}");
    env.cleanup().await;
}
