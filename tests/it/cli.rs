//! The `ranq` binary's edges: exit codes, one-line errors naming the fix,
//! redacted secrets, and the operator commands on a real database and Redis.

use std::process::Output;

use ranq_tests::{Dialect, TestEnv};

fn run(cmd: &mut std::process::Command) -> Output {
    cmd.output().expect("ranq runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Arguments, environment, and a word the error line must contain.
type BadInvocation = (Vec<&'static str>, Vec<(&'static str, &'static str)>, &'static str);

#[tokio::test]
async fn usage_and_configuration_errors_exit_2_with_one_line_naming_the_fix() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cases: Vec<BadInvocation> = vec![
        (vec!["--bogus"], vec![], "--bogus"),
        (vec!["worker", "--batch-size", "0"], vec![], "batch-size"),
        (vec!["worker", "--batch-wait", "soon"], vec![], "batch-wait"),
        (vec!["get", "1"], vec![("RANQ_READ__MAX_AGE", "soon")], "read.max_age"),
        (vec!["get", "1"], vec![("RANQ_READ__MAX_AEG", "1m")], "max_aeg"),
        (vec!["get", "1"], vec![("RANQ_READ__MAX_AGE", "-5s")], "read.max_age (from RANQ_READ__MAX_AGE)"),
        (vec!["worker"], vec![("RANQ_WORKER__BATCH_SIZE", "0")], "worker.batch_size must be at least 1"),
        (vec!["status"], vec![("RANQ_PRODUCER__MAX_BACKLOG", "-1")], "producer.max_backlog"),
        (vec!["get", "abc"], vec![], "not a 64-bit integer"),
        (vec!["get", "1", "--limit", "101"], vec![], "from 1 to 100"),
        (vec!["producer", "--schedule", "every minute"], vec![], "seconds field"),
        (vec!["dirty", "x1"], vec![], "not a 64-bit integer"),
        (vec!["serve"], vec![("RANQ_READ__STALE_AFTER", "20m")], "read.stale_after"),
        (vec!["worker", "--metrics-listen", "nowhere"], vec![], "metrics_listen"),
        (vec!["producer"], vec![("RANQ_PRODUCER__LEASE_TTL", "10ms")], "producer.lease_ttl"),
    ];
    for (args, vars, needle) in cases {
        let out = run(env.ranq().args(&args).envs(vars.iter().copied()));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).trim().lines().count(), 1, "{args:?}: {}", stderr(&out));
    }
    let out = run(env.ranq().arg("migrate").env_remove("DATABASE_URL"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--database-url"), "{}", stderr(&out));
    env.cleanup().await;
}

#[tokio::test]
async fn runtime_failures_exit_1_and_never_print_passwords() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let port = ranq_tests::free_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let out = run(env.ranq().args(["status", "--json"]).env("REDIS_URL", &url));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Redis") && err.contains(":***@"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = run(env.ranq().arg("migrate").env("DATABASE_URL", format!("postgres://app:s3cret@127.0.0.1:{port}/x")));
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).contains("s3cret"), "{}", stderr(&out));
    env.cleanup().await;
}

#[tokio::test]
async fn migrate_is_idempotent_and_seed_refuses_to_mix_with_existing_data() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    for _ in 0..2 {
        let out = run(env.ranq().arg("migrate"));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = run(env.ranq().args(["seed", "--groups", "12", "--members", "30"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("seeded 12 groups"), "{}", stdout(&out));
    let out = run(env.ranq().args(["seed", "--groups", "5"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--replace"), "{}", stderr(&out));
    let out = run(env.ranq().args(["seed", "--groups", "5", "--members", "3", "--replace"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.source().await.group_ids().await.unwrap(), vec![1, 2, 3, 4, 5]);
    env.cleanup().await;
}

#[tokio::test]
async fn dirty_marks_groups_in_the_public_dirty_set() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let out = run(env.ranq().args(["dirty", "3", "1", "3"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut conn = env.redis().await;
    let mut members: Vec<i64> =
        redis::cmd("SMEMBERS").arg(format!("{}:dirty", env.namespace)).query_async(&mut conn).await.unwrap();
    members.sort_unstable();
    assert_eq!(members, vec![1, 3]);
    env.cleanup().await;
}

#[tokio::test]
async fn get_prints_a_miss_and_exits_1_and_refresh_wait_times_out_without_workers() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let out = run(env.ranq().args(["get", "7", "--json"]));
    assert_eq!(out.status.code(), Some(1));
    let body: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((body["status"].as_str(), body["group"].as_i64()), (Some("MISS"), Some(7)));

    let out = run(env.ranq().args(["refresh", "7", "8", "--wait", "--timeout", "1s"]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("2 of 2 groups not refreshed yet: 7 8"), "{err}");
    env.cleanup().await;
}
