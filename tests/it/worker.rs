//! Workers under failure (they survive anything): malformed jobs end in the dead letter
//! without stopping anyone, transient failures are retried then dead-lettered and can be retried
//! by hand, a group whose SQL keeps failing is quarantined while every other group stays FRESH,
//! and custom source SQL is checked at start-up.

use std::process::Output;
use std::time::Duration;

use apalis::prelude::TaskSink;
use apalis_redis::RedisStorage;
use ranq_core::Entry;
use ranq_tests::{Dialect, Proc, Sql, TestEnv, eventually, execute, free_port, truth};
use serde_json::Value;

fn output(cmd: &mut std::process::Command) -> Output {
    cmd.output().expect("ranq runs")
}

/// Runs a read command with `--json` and parses what it printed.
fn json_of(cmd: &mut std::process::Command) -> Value {
    let out = output(cmd);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

/// Pushes a job whose stored payload is exactly `payload`, bypassing every type check: what a
/// client in another language, an older ranq, or a corrupted write could leave on the queue.
async fn push_raw(env: &TestEnv, payload: &[u8]) {
    let marker = format!("raw-{}", ranq_tests::free_port());
    let mut storage: RedisStorage<Value, _> = RedisStorage::new(env.redis().await).with_config(env.apalis_queue());
    storage.push(Value::String(marker.clone())).await.unwrap();
    let mut conn = env.redis().await;
    let data_hash = env.apalis_queue().job_data_hash();
    let all: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL").arg(&data_hash).query_async(&mut conn).await.unwrap();
    let id = all.into_iter().find(|(_, v)| v == format!("\"{marker}\"").as_bytes()).map(|(id, _)| id).unwrap();
    redis::cmd("HSET").arg(&data_hash).arg(id).arg(payload).query_async::<()>(&mut conn).await.unwrap();
}

fn worker(env: &TestEnv, name: &str, extra_env: &[(&str, &str)]) -> Proc {
    let mut cmd = env.ranq();
    cmd.args(["worker", "--batch-size", "16"]);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Proc::spawn(name, cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_jobs_end_in_the_dead_letter_and_workers_keep_running() {
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(5, 20).await;
    // Valid JSON that is not a refresh job, and bytes that are not JSON at all.
    push_raw(&env, br#"{"grp":1,"kind":"mystery"}"#).await;
    push_raw(&env, b"\xff\xfe not json {").await;
    let mut w = worker(&env, "worker", &[]);

    let dead = eventually(Duration::from_secs(30), "both malformed jobs in the dead letter", || async {
        let listed = json_of(env.ranq().args(["dead", "list", "--json"]));
        (listed["total"] == 2).then_some(listed)
    })
    .await;
    let errors: Vec<&str> =
        dead["jobs"].as_array().unwrap().iter().map(|j| j["error"].as_str().unwrap_or("")).collect();
    assert!(errors.iter().any(|e| e.contains("malformed refresh job")), "{dead}");
    assert!(errors.iter().any(|e| e.contains("undecodable payload")), "{dead}");
    assert!(dead["jobs"].as_array().unwrap().iter().all(|j| j["group"].is_null()), "{dead}");

    // The worker still refreshes.
    let refreshed = output(env.ranq().args(["refresh", "1", "2", "3", "--wait", "--timeout", "30s"]));
    assert!(refreshed.status.success(), "{}", String::from_utf8_lossy(&refreshed.stderr));
    assert!(w.is_running(), "the worker survived the malformed jobs");

    // Malformed jobs cannot be retried, only purged.
    let retried = json_of(env.ranq().args(["dead", "retry", "--all", "--json"]));
    assert_eq!((retried["retried"].as_u64(), retried["malformed"].as_array().map(Vec::len)), (Some(0), Some(2)));
    let purged = json_of(env.ranq().args(["dead", "purge", "--all", "--json"]));
    assert_eq!(purged["purged"], 2);
    let status = json_of(env.ranq().args(["status", "--json"]));
    assert_eq!(status["queue"]["dead"], 0, "{status}");

    assert!(w.terminate(Duration::from_secs(20)).success(), "SIGTERM drains and exits 0");
    env.cleanup().await;
}

/// A job whose apalis metadata lost its fields (evicted under memory pressure, edited by hand)
/// makes every fetch that takes it fail. The worker restarts, sends that job to the dead letter
/// and refreshes the jobs fetched with it, instead of fetching it again forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_broken_metadata_is_dead_lettered_and_the_rest_refresh() {
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(5, 20).await;
    let pushed = output(env.ranq().args(["refresh", "1", "2", "3", "4", "5"]));
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    let cache = env.cache().await;
    let mut conn = env.redis().await;
    let data: Vec<(String, String)> =
        redis::cmd("HGETALL").arg(env.apalis_queue().job_data_hash()).query_async(&mut conn).await.unwrap();
    let broken = data.iter().find(|(_, job)| job.contains("\"group\":4")).map(|(id, _)| id.clone()).unwrap();
    let meta = format!("{}:{broken}", env.apalis_queue().job_meta_hash());
    redis::cmd("HDEL").arg(meta).arg("attempts").query_async::<()>(&mut conn).await.unwrap();

    let mut w = worker(&env, "worker", &[]);
    let dead = eventually(Duration::from_secs(30), "the broken job in the dead letter", || async {
        let listed = json_of(env.ranq().args(["dead", "list", "--json"]));
        (listed["total"] == 1).then_some(listed)
    })
    .await;
    assert_eq!(dead["jobs"][0]["id"], broken.as_str(), "{dead}");
    assert!(dead["jobs"][0]["error"].as_str().unwrap().contains("metadata"), "{dead}");
    eventually(Duration::from_secs(30), "the other four groups refreshed", || async {
        let cached = cache.cached_groups().await.unwrap();
        (cached == vec![1, 2, 3, 5]).then_some(())
    })
    .await;
    assert!(w.is_running(), "the worker survived the broken job");
    assert!(w.terminate(Duration::from_secs(20)).success());
    env.cleanup().await;
}

/// A `top_query` over the reference schema that fails with `40001` (serialization failure, a
/// transient error) while `ranq_flaky` has a row, and with `22012` (division by zero) for groups
/// in `ranq_poison`: installs the switches and returns the query, in `dialect`'s SQL.
async fn install_failure_switches(dialect: Dialect, sql: &Sql) -> &'static str {
    execute(sql, "CREATE TABLE ranq_flaky (on_ boolean)").await;
    execute(sql, "CREATE TABLE ranq_poison (group_id bigint PRIMARY KEY)").await;
    match dialect {
        Dialect::Postgres => {
            execute(
                sql,
                "CREATE FUNCTION ranq_flaky_check() RETURNS int LANGUAGE plpgsql AS $$
                 BEGIN
                   IF EXISTS (SELECT 1 FROM ranq_flaky) THEN
                     RAISE EXCEPTION 'injected serialization failure' USING ERRCODE = '40001';
                   END IF;
                   RETURN 1;
                 END $$",
            )
            .await;
            "SELECT s.group_id, s.member_id,
                    s.score / (CASE WHEN p.group_id IS NULL THEN 1 ELSE 0 END) * ranq_flaky_check() AS score,
                    row_number() OVER (PARTITION BY s.group_id ORDER BY s.score DESC, s.updated_at, s.member_id) AS rank
             FROM ranq_scores s LEFT JOIN ranq_poison p ON p.group_id = s.group_id
             WHERE s.group_id = ANY($1)"
        }
        // A SELECT that divides by zero yields NULL here, so the poison raises it by name.
        Dialect::MariaDb => {
            execute(
                sql,
                "CREATE FUNCTION ranq_check(g BIGINT) RETURNS INT READS SQL DATA
                 BEGIN
                   IF EXISTS (SELECT 1 FROM ranq_flaky) THEN
                     SIGNAL SQLSTATE '40001' SET MESSAGE_TEXT = 'injected serialization failure';
                   END IF;
                   IF EXISTS (SELECT 1 FROM ranq_poison WHERE group_id = g) THEN
                     SIGNAL SQLSTATE '22012' SET MESSAGE_TEXT = 'division by zero';
                   END IF;
                   RETURN 1;
                 END",
            )
            .await;
            "SELECT s.group_id, s.member_id, s.score * ranq_check(s.group_id) AS score,
                    row_number() OVER (PARTITION BY s.group_id ORDER BY s.score DESC, s.updated_at, s.member_id) AS `rank`
             FROM ranq_scores s
             WHERE s.group_id IN (SELECT j.id FROM JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) AS j)"
        }
        Dialect::Sqlite => unreachable!("SQLite has no way to raise an error by SQLSTATE"),
    }
}

async fn a_transient_failure_is_retried_then_dead_lettered_and_dead_retry_brings_it_back(dialect: Dialect) {
    let env = TestEnv::new(dialect).await;
    env.seed(5, 20).await;
    let source = env.source().await;
    let sql = env.sql().await;
    let switched_top_query = install_failure_switches(dialect, &sql).await;
    execute(&sql, "INSERT INTO ranq_flaky VALUES (true)").await;
    let settings = [
        ("RANQ_SOURCE__TOP_QUERY", switched_top_query),
        ("RANQ_WORKER__RETRY_ATTEMPTS", "3"),
        ("RANQ_WORKER__RETRY_BACKOFF", "10ms"),
        ("RANQ_WORKER__MAX_ATTEMPTS", "2"),
    ];
    let mut w = worker(&env, "worker", &settings);
    let pushed = output(env.ranq().args(["refresh", "4"]));
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));

    let dead = eventually(Duration::from_secs(30), "the job dead after its two attempts", || async {
        let listed = json_of(env.ranq().args(["dead", "list", "--json"]));
        (listed["total"] == 1).then_some(listed)
    })
    .await;
    let job = &dead["jobs"][0];
    assert_eq!((job["group"].as_i64(), job["attempts"].as_u64()), (Some(4), Some(2)), "{dead}");
    assert!(job["error"].as_str().unwrap().contains("injected serialization failure"), "{dead}");
    let missing = output(env.ranq().args(["get", "4"]));
    assert_eq!(missing.status.code(), Some(1), "nothing was cached while the database failed");

    // The database recovers; the operator retries the dead job.
    execute(&sql, "DELETE FROM ranq_flaky").await;
    let id = job["id"].as_str().unwrap();
    let retried = json_of(env.ranq().args(["dead", "retry", id, "--json"]));
    assert_eq!(retried["retried"], 1, "{retried}");
    let cache = env.cache().await;
    let snapshot = eventually(Duration::from_secs(30), "group 4 cached after the retry", || async {
        cache.snapshot(4).await.unwrap()
    })
    .await;
    assert_eq!(snapshot.entries, truth(&sql, 4).await);
    assert_eq!(json_of(env.ranq().args(["status", "--json"]))["queue"]["dead"], 0);

    assert!(w.terminate(Duration::from_secs(20)).success());
    source.close().await;
    env.cleanup().await;
}

on_each_dialect!(a_transient_failure_is_retried_then_dead_lettered_and_dead_retry_brings_it_back, multi_thread, [
    postgres => Postgres, mariadb => MariaDb
]);

async fn a_group_that_keeps_failing_is_quarantined_and_served_flagged_while_the_rest_stay_fresh(dialect: Dialect) {
    const GROUPS: i64 = 12;
    const POISONED: i64 = 7;
    let env = TestEnv::new(dialect).await;
    env.seed(GROUPS as u32, 30).await;
    let source = env.source().await;
    let sql = env.sql().await;
    let switched_top_query = install_failure_switches(dialect, &sql).await;
    let settings = [
        ("RANQ_SOURCE__TOP_QUERY", switched_top_query),
        ("RANQ_WORKER__QUARANTINE_AFTER", "3"),
        ("RANQ_WORKER__QUARANTINE_RETRY", "1h"),
        ("RANQ_READ__STALE_AFTER", "3s"),
    ];
    let mut w = worker(&env, "worker", &settings);
    let mut producer = {
        let mut cmd = env.ranq();
        cmd.args(["producer", "--schedule", "* * * * * *"]);
        for (k, v) in settings {
            cmd.env(k, v);
        }
        Proc::spawn("producer", cmd)
    };
    let (port, admin_port) = (free_port(), free_port());
    let mut serve = {
        let mut cmd = env.ranq();
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .env("RANQ_READ__STALE_AFTER", "3s");
        Proc::spawn("serve", cmd)
    };
    let cache = env.cache().await;
    let all_cached = output(env.ranq().args(["refresh", "--all", "--wait", "--timeout", "30s"]));
    assert!(all_cached.status.success(), "{}", String::from_utf8_lossy(&all_cached.stderr));
    let last_good: Vec<Entry> = cache.snapshot(POISONED).await.unwrap().unwrap().entries;

    execute(&sql, &format!("INSERT INTO ranq_poison VALUES ({POISONED})")).await;
    let status = eventually(Duration::from_secs(30), "group 7 quarantined", || async {
        let status = json_of(env.ranq().args(["status", "--json"]));
        (status["groups"]["quarantined"] == 1).then_some(status)
    })
    .await;
    let q = &status["quarantine"][0];
    assert_eq!((q["group"].as_i64(), q["failures"].as_u64()), (Some(POISONED), Some(3)), "{status}");
    assert!(q["error"].as_str().unwrap().contains("division by zero"), "{status}");

    // Ticks go on every second; the quarantined group is left out of them, everyone else is
    // refreshed (FRESH means younger than 3 s here) and equals the SQL truth.
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    for group in 1..=GROUPS {
        let response = http.get(format!("{base}/v1/groups/{group}/top")).send().await.unwrap();
        assert_eq!(response.status(), 200, "group {group}");
        let body: Value = response.json().await.unwrap();
        let entries: Vec<Entry> = serde_json::from_value(body["entries"].clone()).unwrap();
        if group == POISONED {
            assert_eq!((body["status"].as_str(), body["quarantined"].as_bool()), (Some("STALE"), Some(true)), "{body}");
            // The public answer says that refreshes fail, never what the database said.
            let error = body["error"].as_str().unwrap();
            assert!(error.contains("keep failing") && !error.contains("division"), "{body}");
            assert_eq!(entries, last_good, "the last good snapshot is served");
        } else {
            assert_eq!(body["status"], "FRESH", "group {group}: {body}");
            assert!(body.get("quarantined").is_none() && body.get("error").is_none(), "{body}");
            assert_eq!(entries, truth(&sql, group).await, "group {group}");
        }
    }
    // The operators' side has the database's words.
    let report: Value =
        http.get(format!("http://127.0.0.1:{admin_port}/v1/status")).send().await.unwrap().json().await.unwrap();
    assert!(report["quarantine"][0]["error"].as_str().unwrap().contains("division by zero"), "{report}");
    let health = cache.health(POISONED).await.unwrap().unwrap();
    assert_eq!(health.failures, 3, "a quarantined group is not retried every tick");

    // Fixed at the source, a manual refresh ends the quarantine at once.
    execute(&sql, "DELETE FROM ranq_poison").await;
    let fixed = output(env.ranq().args(["refresh", &POISONED.to_string(), "--wait", "--timeout", "30s"]));
    assert!(fixed.status.success(), "{}", String::from_utf8_lossy(&fixed.stderr));
    assert_eq!(json_of(env.ranq().args(["status", "--json"]))["groups"]["quarantined"], 0);
    assert!(cache.health(POISONED).await.unwrap().is_none());

    for p in [&mut producer, &mut w, &mut serve] {
        assert!(p.terminate(Duration::from_secs(20)).success(), "{} exits 0 on SIGTERM", p.name);
    }
    source.close().await;
    env.cleanup().await;
}

on_each_dialect!(a_group_that_keeps_failing_is_quarantined_and_served_flagged_while_the_rest_stay_fresh, multi_thread, [
    postgres => Postgres, mariadb => MariaDb
]);

/// In dirty mode no sweep comes to try a failed group again, and its job was acked: the worker
/// marks it dirty itself, so it is retried each tick until it recovers or is quarantined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_dirty_mode_a_failing_group_is_retried_each_tick_until_quarantined() {
    const POISONED: i64 = 3;
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(5, 10).await;
    let source = env.source().await;
    let sql = env.sql().await;
    let switched_top_query = install_failure_switches(Dialect::Postgres, &sql).await;
    execute(&sql, &format!("INSERT INTO ranq_poison VALUES ({POISONED})")).await;
    let settings = [
        ("RANQ_SOURCE__TOP_QUERY", switched_top_query),
        ("RANQ_WORKER__QUARANTINE_AFTER", "3"),
        ("RANQ_WORKER__QUARANTINE_RETRY", "1h"),
    ];
    let mut w = worker(&env, "worker", &settings);
    // The first tick sweeps (the cache is empty); the next sweep is a thousand ticks away.
    let mut producer = {
        let mut cmd = env.ranq();
        cmd.args(["producer", "--schedule", "* * * * * *", "--mode", "dirty", "--sweep-every", "1000"]);
        Proc::spawn("producer", cmd)
    };
    let status = eventually(Duration::from_secs(30), "the failing group quarantined", || async {
        let status = json_of(env.ranq().args(["status", "--json"]));
        (status["groups"]["quarantined"] == 1).then_some(status)
    })
    .await;
    assert_eq!(status["quarantine"][0]["group"], POISONED, "{status}");
    assert_eq!(status["quarantine"][0]["failures"], 3, "{status}");
    assert_eq!(status["groups"]["cached"], 4, "the other groups were refreshed: {status}");
    assert!(producer.terminate(Duration::from_secs(20)).success());
    assert!(w.terminate(Duration::from_secs(20)).success());
    source.close().await;
    env.cleanup().await;
}

async fn custom_sql_without_a_required_column_is_a_configuration_error_naming_it(dialect: Dialect) {
    let env = TestEnv::new(dialect).await;
    let without_rank = match dialect {
        Dialect::MariaDb => {
            "SELECT group_id, member_id, score FROM ranq_scores
             WHERE group_id IN (SELECT j.id FROM JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) AS j)"
        }
        _ => "SELECT group_id, member_id, score FROM ranq_scores WHERE group_id = ANY($1)",
    };
    let out = output(env.ranq().args(["worker"]).env("RANQ_SOURCE__TOP_QUERY", without_rank));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("source.top_query") && stderr.contains("`rank`"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let out = output(env.ranq().args(["producer"]).env("RANQ_SOURCE__GROUP_IDS_QUERY", "SELECT nope FROM nowhere"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("source.group_ids_query") && stderr.contains("nowhere"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    if dialect == Dialect::MariaDb {
        // Positional parameters: at most the ids and N.
        let out = output(
            env.ranq()
                .args(["worker"])
                .env("RANQ_SOURCE__GROUPS_QUERY", "SELECT id AS group_id FROM ranq_groups WHERE id IN (?, ?, ?)"),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("source.groups_query") && stderr.contains("3 `?` parameters"), "{stderr}");
    }
    env.cleanup().await;
}

on_each_dialect!(custom_sql_without_a_required_column_is_a_configuration_error_naming_it, [
    postgres => Postgres, mariadb => MariaDb
]);

/// Jobs fetched and not yet acked by the worker process `pid` (its apalis workers' in-flight
/// sets; their names carry the pid).
async fn jobs_held_by(env: &TestEnv, pid: i32) -> u64 {
    let mut conn = env.redis().await;
    let pattern = format!("{}:worker-*-{pid}-*", env.apalis_queue().inflight_jobs_set());
    let sets: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await.unwrap();
    let mut held = 0;
    for set in sets {
        held += redis::cmd("SCARD").arg(set).query_async::<u64>(&mut conn).await.unwrap();
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_ten_times_mid_sweep_loses_no_refresh() {
    const GROUPS: i64 = 1_000;
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(GROUPS as u32, 50).await;
    let sql = env.sql().await;
    let cache = env.cache().await;
    let mut steady = worker(&env, "steady", &[]);

    let mut held_at_kills = 0;
    let mut last_kill = std::time::Instant::now();
    for round in 1..=10_i64 {
        let mut victim = worker(&env, &format!("victim-{round}"), &[]);
        // New scores in every group, then a sweep that must pick them up.
        execute(&sql, &format!("UPDATE ranq_scores SET score = score + (member_id * {round}) % 97")).await;
        let sweep = output(env.ranq().args(["refresh", "--all"]));
        assert!(sweep.status.success(), "{}", String::from_utf8_lossy(&sweep.stderr));
        tokio::time::sleep(Duration::from_millis(150 + 20 * round as u64)).await;
        held_at_kills += jobs_held_by(&env, victim.pid().as_raw()).await;
        nix::sys::signal::kill(victim.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
        last_kill = std::time::Instant::now();
        let _ = victim.terminate_killed();
    }
    assert!(held_at_kills > 0, "the kills landed while the victims held jobs");
    eprintln!("the victims held {held_at_kills} jobs in all when killed");

    let mut expected = std::collections::HashMap::new();
    for group in 1..=GROUPS {
        expected.insert(group, truth(&sql, group).await);
    }
    // A hang guard, not a speed limit: how fast the fleet converges after a kill is what
    // `ranq bench chaos` measures and prints (worker_killed, max converge).
    eventually(Duration::from_secs(120), "every group equal to the SQL truth after the last kill", || async {
        for group in 1..=GROUPS {
            match cache.snapshot(group).await.unwrap() {
                Some(s) if s.entries == expected[&group] => {}
                _ => return None,
            }
        }
        Some(())
    })
    .await;
    eprintln!("converged {:?} after the last kill", last_kill.elapsed());
    assert!(steady.is_running());
    assert!(steady.terminate(Duration::from_secs(20)).success());
    env.cleanup().await;
}
