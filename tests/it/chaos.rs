//! Reliability under faults (docs/operating.md, "Reliability, tested"), CI-sized: Redis lost and restarted empty under a
//! running fleet, and the database cut off behind a proxy. Each test uses services of its own
//! (a private redis-server, a proxy in front of its own database), so nothing outside it is
//! disturbed. The fleet processes are never restarted: recovering is their job.

use std::collections::HashSet;
use std::time::Duration;

use ranq_faults::FaultProxy;
use ranq_launch::RedisServer;
use ranq_tests::{Dialect, Proc, Sql, TestEnv, eventually, execute, free_port, truth};
use serde_json::Value;

/// The groups whose cached top-100, as `serve` answers it, is FRESH and equals the SQL truth.
async fn fresh_and_true(http: &reqwest::Client, base: &str, sql: &Sql, groups: i64) -> usize {
    let mut ok = HashSet::new();
    for group in 1..=groups {
        let Ok(response) = http.get(format!("{base}/v1/groups/{group}/top")).send().await else { continue };
        let Ok(body) = response.json::<Value>().await else { continue };
        let entries: Vec<ranq_core::Entry> = serde_json::from_value(body["entries"].clone()).unwrap_or_default();
        if body["status"] == "FRESH" && entries == truth(sql, group).await {
            ok.insert(group);
        }
    }
    ok.len()
}

async fn status_of(http: &reqwest::Client, base: &str, group: i64) -> Option<(u16, String)> {
    let response = http.get(format!("{base}/v1/groups/{group}/top")).send().await.ok()?;
    let code = response.status().as_u16();
    let body: Value = response.json().await.ok()?;
    Some((code, body["status"].as_str()?.to_owned()))
}

async fn ticks_enqueued(env: &TestEnv) -> u64 {
    let out = env.ranq().args(["status", "--json"]).output().unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    status["ticks"]["enqueued"].as_u64().unwrap()
}

fn spawn(env: &TestEnv, name: &str, args: &[&str], vars: &[(&str, &str)]) -> Proc {
    let mut cmd = env.ranq();
    cmd.args(args).envs(vars.iter().copied());
    Proc::spawn(name, cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_rebuilds_the_cache_by_itself_after_redis_restarts_empty() {
    const GROUPS: i64 = 60;
    let env = TestEnv::new(Dialect::Sqlite).await;
    env.seed(GROUPS as u32, 10).await;
    let sql = env.sql().await;
    let mut redis = RedisServer::start().expect("a private redis-server starts (scripts/test installs redis-server)");
    let url = redis.url();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let vars = [("REDIS_URL", url.as_str())];
    // Dirty mode with no periodic sweep: only the empty-cache rule can bring the groups back.
    let mut fleet = vec![
        spawn(
            &env,
            "producer",
            &["producer", "--schedule", "* * * * * *", "--mode", "dirty", "--sweep-every", "0"],
            &vars,
        ),
        spawn(&env, "worker", &["worker"], &vars),
        // Reads do not ask for refreshes here: what is rebuilt, the fleet rebuilt by itself.
        spawn(
            &env,
            "serve",
            &["serve", "--listen", &format!("127.0.0.1:{port}")],
            &[vars[0], ("RANQ_READ__ON_MISS", "none")],
        ),
    ];
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(60), "every group FRESH before the fault", || async {
        (fresh_and_true(&http, &base, &sql, GROUPS).await == GROUPS as usize).then_some(())
    })
    .await;

    redis.kill();
    eventually(Duration::from_secs(10), "readyz says Redis is gone", || async {
        let code = http.get(format!("{base}/readyz")).send().await.ok()?.status().as_u16();
        (code == 503).then_some(())
    })
    .await;
    // Scores change while Redis is away: what comes back must be the new truth.
    execute(&sql, "UPDATE ranq_scores SET score = score + member_id * 7 WHERE group_id % 2 = 0").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.start_again().unwrap();

    eventually(Duration::from_secs(60), "every group FRESH and true again, no process restarted", || async {
        (fresh_and_true(&http, &base, &sql, GROUPS).await == GROUPS as usize).then_some(())
    })
    .await;
    assert_eq!(http.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
    for proc in &mut fleet {
        assert!(proc.is_running(), "{} exited instead of reconnecting", proc.name);
    }
    // The queue works again too: a manual refresh goes through and lands.
    let out = env
        .ranq()
        .env("REDIS_URL", &url)
        .args(["refresh", "1", "2", "3", "--wait", "--timeout", "20s"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for proc in &mut fleet {
        assert!(proc.terminate(Duration::from_secs(30)).success(), "{} did not drain", proc.name);
    }
    env.cleanup().await;
}

async fn a_database_cut_serves_stale_then_miss_without_a_dead_letter_storm_and_converges_after(dialect: Dialect) {
    const GROUPS: i64 = 40;
    const CUT: Duration = Duration::from_secs(40);
    let env = TestEnv::new(dialect).await;
    env.seed(GROUPS as u32, 10).await;
    let sql = env.sql().await;
    let upstream = {
        let url = url::Url::parse(&env.database_url).unwrap();
        let host = url.host_str().unwrap().to_owned();
        tokio::net::lookup_host((host.as_str(), url.port().unwrap_or(dialect.default_port())))
            .await
            .unwrap()
            .next()
            .unwrap()
    };
    let proxy = FaultProxy::start(upstream).await.unwrap();
    let through_proxy = proxy.wrap(&env.database_url).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let db = [("DATABASE_URL", through_proxy.as_str())];
    let mut fleet = vec![
        spawn(&env, "producer", &["producer", "--schedule", "* * * * * *"], &db),
        spawn(&env, "worker", &["worker"], &db),
        spawn(
            &env,
            "serve",
            &["serve", "--listen", &format!("127.0.0.1:{port}")],
            // Reads do not ask for refreshes: convergence must come from the producer's ticks.
            &[("RANQ_READ__STALE_AFTER", "2s"), ("RANQ_READ__MAX_AGE", "5s"), ("RANQ_READ__ON_MISS", "none")],
        ),
    ];
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(60), "every group FRESH before the fault", || async {
        (fresh_and_true(&http, &base, &sql, GROUPS).await == GROUPS as usize).then_some(())
    })
    .await;

    let ticks_before_cut = ticks_enqueued(&env).await;
    assert!(ticks_before_cut >= 1, "the producer ticked before the fault");
    proxy.cut();
    let cut_at = tokio::time::Instant::now();
    // Jobs keep coming while the database is away (a manual refresh needs only Redis): every
    // one of them fails, is retried and handed back, and must still be alive at the repair.
    let ids: Vec<String> = (1..=GROUPS).map(|g| g.to_string()).collect();
    let out = env.ranq().arg("refresh").args(&ids).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Reads keep being answered from the cache: STALE past stale_after, MISS past max_age, and
    // the read service stays ready (it needs Redis, not the database).
    eventually(Duration::from_secs(10), "group 1 served STALE during the cut", || async {
        (status_of(&http, &base, 1).await? == (200, "STALE".to_owned())).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "group 1 a MISS once older than max_age", || async {
        (status_of(&http, &base, 1).await? == (404, "MISS".to_owned())).then_some(())
    })
    .await;
    assert_eq!(http.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
    // The database changes behind the cut (directly, not through the proxy).
    execute(&sql, "UPDATE ranq_scores SET score = score + member_id * 11 WHERE group_id % 3 = 0").await;
    // Long enough for jobs to exhaust their in-process retries and go back to the queue a few
    // times (ranq bench chaos cuts for longer).
    tokio::time::sleep_until(cut_at + CUT).await;
    proxy.repair();

    eventually(Duration::from_secs(90), "every group FRESH and equal to the new truth", || async {
        (fresh_and_true(&http, &base, &sql, GROUPS).await == GROUPS as usize).then_some(())
    })
    .await;
    assert!(ticks_enqueued(&env).await > ticks_before_cut, "the producer ticks again after the repair");
    let out = env.ranq().args(["status", "--json"]).output().unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["queue"]["dead"], 0, "a cut database must not fill the dead letter: {status}");
    assert_eq!(status["groups"]["quarantined"], 0, "nor quarantine healthy groups: {status}");
    for proc in &mut fleet {
        assert!(proc.is_running(), "{} exited during the cut", proc.name);
    }
    for proc in &mut fleet {
        assert!(proc.terminate(Duration::from_secs(30)).success(), "{} did not drain", proc.name);
    }
    env.cleanup().await;
}

on_each_dialect!(a_database_cut_serves_stale_then_miss_without_a_dead_letter_storm_and_converges_after, multi_thread, [
    postgres => Postgres, mariadb => MariaDb
]);
