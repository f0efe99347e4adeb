//! The fleet with least privilege, exactly as docs/deploying.md ("Least privilege") grants it:
//! a Redis ACL user limited to the namespace's keys and channels and to the commands the docs
//! list, and a Postgres role that may only SELECT the source. The ACL line and the grants are
//! read from the page, so the page cannot promise what the fleet does not keep. Everything the
//! fleet does — ticks, refreshes, reads, refresh on read, in-memory copies, the dead letter,
//! every operator command — runs as those two, and the test fails if Redis refused anything
//! (`ACL LOG`) or a key lands outside the namespace.

use std::time::Duration;

use ranq_launch::RedisServer;
use ranq_tests::{Dialect, Proc, TestEnv, eventually, execute, free_port, truth};
use serde_json::Value;

fn deploying() -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploying.md")).unwrap()
}

/// The page's `ACL SETUSER` line for namespace `ranq`, made for `namespace` and `password`.
fn acl_setuser(namespace: &str, password: &str) -> Vec<String> {
    let page = deploying();
    let line = page.lines().find(|l| l.starts_with("ACL SETUSER ranq ")).expect("docs/deploying.md has the ACL line");
    line.replace("~ranq:*", &format!("~{namespace}:*"))
        .replace("&ranq:*", &format!("&{namespace}:*"))
        .replace(">CHANGE-ME", &format!(">{password}"))
        .split_whitespace()
        .skip(1) // "ACL", the command itself; SETUSER … are its arguments.
        .map(str::to_owned)
        .collect()
}

/// The page's grants for the reading role, made for `role` and the database `db`.
fn grants(role: &str, db: &str) -> Vec<String> {
    let page = deploying();
    let start = page.find("CREATE ROLE ranq_reader").expect("docs/deploying.md has the grants");
    let block = &page[start..page[start..].find("```").map(|end| start + end).unwrap()];
    block
        .replace("ranq_reader", role)
        .replace("DATABASE app", &format!("DATABASE {db}"))
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn succeeds(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_fleet_runs_as_the_documented_least_privileged_redis_user_and_postgres_role() {
    const GROUPS: i64 = 40;
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(GROUPS as u32, 10).await;
    let sql = env.sql().await;
    let redis = RedisServer::start().expect("redis-server starts (scripts/test installs it)");
    let admin = redis::Client::open(redis.url()).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("ACL").arg(acl_setuser(&env.namespace, "s3cret")).query_async::<()>(&mut admin).await.unwrap();
    let role = format!("reader_{}", env.namespace.rsplit('_').next().unwrap());
    let db = env.database_url.rsplit('/').next().unwrap().to_owned();
    for statement in grants(&role, &db) {
        execute(&sql, &statement).await;
    }
    let redis_url = format!("redis://ranq:s3cret@127.0.0.1:{}", redis.port());
    let database_url = env.database_url.replacen("postgres@", &format!("{role}:CHANGE-ME@"), 1);
    let fleet = |args: &[&str]| {
        let mut cmd = env.ranq();
        cmd.args(args).env("REDIS_URL", &redis_url).env("DATABASE_URL", &database_url);
        cmd
    };

    // Nothing beyond the grant: the user cannot, say, flush the server.
    let mut user = redis::Client::open(redis_url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let refused = redis::cmd("FLUSHALL").query_async::<()>(&mut user).await.expect_err("FLUSHALL is not granted");
    assert!(refused.to_string().to_ascii_lowercase().contains("noperm"), "{refused}");
    redis::cmd("ACL").arg("LOG").arg("RESET").query_async::<()>(&mut admin).await.unwrap();

    let (port, admin_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let mut roles = vec![
        Proc::spawn("producer", fleet(&["producer", "--schedule", "*/2 * * * * *", "--mode", "dirty"])),
        Proc::spawn("worker-1", fleet(&["worker"])),
        Proc::spawn("worker-2", fleet(&["worker"])),
        Proc::spawn(
            "serve",
            fleet(&[
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin-listen",
                &format!("127.0.0.1:{admin_port}"),
            ]),
        ),
    ];
    succeeds(&mut fleet(&["refresh", "--all", "--wait", "--timeout", "60s"]));
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(60), "every group FRESH and equal to the SQL truth", || async {
        for group in 1..=GROUPS {
            let body: Value = http.get(format!("{base}/v1/groups/{group}/top")).send().await.ok()?.json().await.ok()?;
            let entries: Vec<ranq_core::Entry> = serde_json::from_value(body["entries"].clone()).ok()?;
            if body["status"] != "FRESH" || entries != truth(&sql, group).await {
                return None;
            }
        }
        Some(())
    })
    .await;

    // A change marked dirty reaches the board; a MISS asks for a refresh; the fleet report reads.
    execute(&sql, "UPDATE ranq_scores SET score = score + 100000 WHERE group_id = 3 AND member_id = 2").await;
    succeeds(&mut fleet(&["dirty", "3"]));
    eventually(Duration::from_secs(30), "the dirty group refreshed", || async {
        let body: Value = http.get(format!("{base}/v1/groups/3/top")).send().await.ok()?.json().await.ok()?;
        (body["entries"][0]["member"] == 2).then_some(())
    })
    .await;
    let miss = http.get(format!("{base}/v1/groups/999999/top")).send().await.unwrap();
    assert_eq!(miss.status(), 404);
    let report = http.get(format!("http://127.0.0.1:{admin_port}/v1/status")).send().await.unwrap();
    assert_eq!(report.status(), 200);

    // The dead letter, as an operator uses it: a payload that is no refresh job dies; list, retry
    // and purge it.
    let manager = redis::Client::open(redis.url()).unwrap().get_connection_manager().await.unwrap();
    let mut storage: apalis_redis::RedisStorage<Value> =
        apalis_redis::RedisStorage::new(manager).with_config(env.apalis_queue());
    apalis::prelude::TaskSink::push(&mut storage, serde_json::json!({"not": "a job"})).await.unwrap();
    eventually(Duration::from_secs(30), "the malformed job in the dead letter", || async {
        let listed: Value = serde_json::from_str(&succeeds(&mut fleet(&["dead", "list", "--json"]))).ok()?;
        (listed["total"] == 1).then_some(())
    })
    .await;
    succeeds(&mut fleet(&["dead", "retry", "--all"]));
    succeeds(&mut fleet(&["dead", "purge", "--all"]));
    for args in [&["status", "--json"][..], &["status", "--stale"], &["get", "5"]] {
        succeeds(&mut fleet(args));
    }
    for role in &mut roles {
        assert!(role.terminate(Duration::from_secs(20)).success(), "{} stops cleanly", role.name);
    }

    // Redis refused nothing, and nothing was written outside the namespace.
    let log: Vec<redis::Value> = redis::cmd("ACL").arg("LOG").query_async(&mut admin).await.unwrap();
    assert!(log.is_empty(), "Redis refused the fleet: {log:?}");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut admin).await.unwrap();
    let outside: Vec<&String> = keys.iter().filter(|k| !k.starts_with(&format!("{}:", env.namespace))).collect();
    assert!(outside.is_empty(), "keys outside the namespace: {outside:?}");
    execute(&sql, &format!("DROP OWNED BY {role}")).await;
    execute(&sql, &format!("DROP ROLE {role}")).await;
    env.cleanup().await;
}
