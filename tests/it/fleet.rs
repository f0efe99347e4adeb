//! The whole fleet as real processes of the built binary: producer, two workers and the read API
//! against Postgres, checked group by group against SQL over HTTP; and `ranq up` on SQLite.

use std::collections::HashSet;
use std::time::Duration;

use ranq_core::Entry;
use ranq_tests::{Dialect, Proc, Sql, TestEnv, eventually, execute, free_port, truth};
use serde_json::Value;

const GROUPS: i64 = 300;

/// Groups whose cached entries (over HTTP) are FRESH and equal the SQL truth right now.
async fn groups_matching_truth(http: &reqwest::Client, base: &str, sql: &Sql) -> HashSet<i64> {
    let mut ok = HashSet::new();
    for group in 1..=GROUPS {
        let Ok(response) = http.get(format!("{base}/v1/groups/{group}/top")).send().await else { continue };
        if response.status() != 200 {
            continue;
        }
        let body: Value = response.json().await.unwrap();
        let entries: Vec<Entry> = serde_json::from_value(body["entries"].clone()).unwrap();
        if body["status"] == "FRESH" && entries == truth(sql, group).await {
            ok.insert(group);
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_keeps_every_group_equal_to_the_sql_truth() {
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(300, 250).await;
    let sql = env.sql().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");

    let (producer_metrics, worker_metrics) = (free_port(), free_port());
    let mut producer = {
        let mut cmd = env.ranq();
        cmd.args([
            "producer",
            "--schedule",
            "*/2 * * * * *",
            "--metrics-listen",
            &format!("127.0.0.1:{producer_metrics}"),
        ]);
        Proc::spawn("producer", cmd)
    };
    let mut workers: Vec<Proc> = (1..=2)
        .map(|i| {
            let mut cmd = env.ranq();
            cmd.args(["worker", "--batch-size", "32"]);
            if i == 1 {
                cmd.args(["--metrics-listen", &format!("127.0.0.1:{worker_metrics}")]);
            }
            Proc::spawn(&format!("worker-{i}"), cmd)
        })
        .collect();
    let mut serve = {
        let mut cmd = env.ranq();
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
        Proc::spawn("serve", cmd)
    };
    let http = reqwest::Client::new();

    eventually(Duration::from_secs(60), "every group FRESH and equal to SQL", || async {
        (groups_matching_truth(&http, &base, &sql).await.len() == GROUPS as usize).then_some(())
    })
    .await;

    // Scores change in SQL: the new truth is served after the next ticks.
    execute(
        &sql,
        "UPDATE ranq_scores SET score = score + (member_id * 37) % 5000, updated_at = now() WHERE group_id % 3 = 0",
    )
    .await;
    execute(&sql, "DELETE FROM ranq_groups WHERE id = 300").await;
    eventually(Duration::from_secs(30), "changed groups served with the new truth", || async {
        let ok = groups_matching_truth(&http, &base, &sql).await;
        let gone = http.get(format!("{base}/v1/groups/300/top")).send().await.ok()?.status() == 404;
        (ok.len() == GROUPS as usize - 1 && gone).then_some(())
    })
    .await;

    let out = env.ranq().args(["status", "--json"]).output().unwrap();
    assert!(out.status.success());
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["groups"]["cached"], GROUPS - 1, "{status}");
    assert_eq!(status["workers"]["alive"], 2, "{status}");
    assert!(status["last_tick"]["id"].as_str().is_some_and(|id| id.ends_with('Z')), "{status}");
    assert!(status["ticks"]["enqueued"].as_u64().unwrap() >= 2, "{status}");
    for field in ["pending", "running", "dead"] {
        assert!(status["queue"][field].is_u64(), "{status}");
    }

    // Producer and worker metrics (docs/reference/metrics.md).
    let text = |port: u16| {
        let http = http.clone();
        async move { http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap().text().await.unwrap() }
    };
    let producer_text = text(producer_metrics).await;
    assert!(producer_text.contains(r#"ranq_ticks_total{outcome="enqueued"}"#), "{producer_text}");
    assert!(producer_text.contains("ranq_jobs_enqueued_total"), "{producer_text}");
    let worker_text = text(worker_metrics).await;
    for needle in
        [r#"ranq_refreshes_total{outcome="written"}"#, "ranq_refresh_batch_size_bucket", "ranq_refresh_seconds_bucket"]
    {
        assert!(worker_text.contains(needle), "{needle} missing: {worker_text}");
    }

    // SIGTERM: every process drains and exits 0.
    for proc in workers.iter_mut().chain([&mut producer, &mut serve]) {
        let exit = proc.terminate(Duration::from_secs(30));
        assert!(exit.success(), "{} exited with {exit}", proc.name);
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranq_up_serves_fresh_leaderboards_and_ctrl_c_leaves_nothing_behind() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let port = free_port();
    // Nothing answers at REDIS_URL, so `up` starts a redis-server of its own.
    let nowhere = format!("redis://127.0.0.1:{}", free_port());
    let log = env.dir.join("up.log");
    let mut up = {
        let mut cmd = env.ranq();
        cmd.env_remove("DATABASE_URL").env_remove("RANQ_LOG_FORMAT").env("REDIS_URL", &nowhere);
        cmd.args(["up", "--groups", "20", "--members", "50", "--workers", "2"]);
        cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
        cmd.stderr(std::fs::File::create(&log).unwrap());
        Proc::spawn("up", cmd)
    };
    let http = reqwest::Client::new();
    let body: Value = eventually(Duration::from_secs(60), "group 1 served FRESH by ranq up", || async {
        let response = http.get(format!("http://127.0.0.1:{port}/v1/groups/1/top")).send().await.ok()?;
        let body: Value = response.json().await.ok()?;
        (body["status"] == "FRESH").then_some(body)
    })
    .await;
    assert_eq!(body["entries"].as_array().unwrap().len(), 50);
    assert!(env.dir.join("ranq-demo.db").exists(), "the demo database lives in the working directory");

    let exit = up.stop_with(nix::sys::signal::Signal::SIGINT, Duration::from_secs(40));
    assert!(exit.success(), "ranq up exited with {exit}");

    // One stream, every role's lines behind its own aligned prefix, and the URL to open.
    let output = std::fs::read_to_string(&log).unwrap();
    for prefix in ["producer     | ", "worker-1     | ", "worker-2     | ", "serve        | "] {
        assert!(output.lines().any(|l| l.starts_with(prefix)), "no line from {prefix:?}:\n{output}");
    }
    assert!(output.contains(&format!("http://127.0.0.1:{port}/v1/groups/1/top")), "{output}");
    let redis_port: u16 = output
        .split("started redis-server on port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("up says which port its redis-server got:\n{output}"));

    // Nothing is left: not the read API, not the private redis-server, no process of this fleet.
    assert!(http.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_err(), "the read API stopped");
    assert!(std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_err(), "the private redis-server stopped");
    let marker = format!("RANQ_NAMESPACE={}", env.namespace);
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == marker.as_bytes()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("cmdline")).ok())
        .collect();
    assert!(left.is_empty(), "processes left behind by ranq up: {left:?}");
    env.cleanup().await;
}

#[tokio::test]
async fn serve_reads_its_freshness_ages_from_the_environment() {
    use ranq_cache::Write;
    use ranq_core::Snapshot;

    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    let aged = |group: i64, secs: i64| {
        let version = (chrono::Utc::now() - chrono::Duration::seconds(secs)).timestamp_micros();
        Write::Snapshot(Snapshot::new(group, version, vec![Entry { rank: 1, member: 1, score: 1 }]))
    };
    cache.write_batch(&[aged(1, 0), aged(2, 3), aged(3, 6)]).await.unwrap();
    let port = free_port();
    let serve = {
        let mut cmd = env.ranq();
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
        cmd.env("RANQ_READ__STALE_AFTER", "2s").env("RANQ_READ__MAX_AGE", "5s");
        Proc::spawn("serve", cmd)
    };
    let http = reqwest::Client::new();
    let status_of = |group: i64| {
        let http = http.clone();
        async move {
            let response = http.get(format!("http://127.0.0.1:{port}/v1/groups/{group}/top")).send().await.ok()?;
            let code = response.status().as_u16();
            let body: Value = response.json().await.ok()?;
            Some((code, body["status"].as_str()?.to_owned()))
        }
    };
    let fresh = eventually(Duration::from_secs(10), "serve answers", || status_of(1)).await;
    assert_eq!(fresh, (200, "FRESH".into()));
    assert_eq!(status_of(2).await, Some((200, "STALE".into())));
    assert_eq!(status_of(3).await, Some((404, "MISS".into())));
    drop(serve);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_group_tick_goes_through_without_losing_a_worker() {
    // apalis-redis 1.0 kills every worker when ~8,000 jobs fall due at once; the producer's
    // chunked, backpressured enqueue must keep a 10k tick well below that.
    const GROUPS: usize = 10_000;
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(GROUPS as u32, 2).await;
    let mut workers: Vec<Proc> = (1..=2)
        .map(|i| {
            let mut cmd = env.ranq();
            cmd.arg("worker");
            Proc::spawn(&format!("worker-{i}"), cmd)
        })
        .collect();
    let producer = {
        let mut cmd = env.ranq();
        cmd.args(["producer", "--schedule", "*/5 * * * * *"]);
        Proc::spawn("producer", cmd)
    };
    let cache = env.cache().await;
    eventually(Duration::from_secs(90), "all 10k groups cached", || async {
        (cache.cached_groups().await.ok()?.len() == GROUPS).then_some(())
    })
    .await;
    for w in &mut workers {
        assert!(w.is_running(), "{} died", w.name);
    }
    let out = env.ranq().args(["status", "--json"]).output().unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["queue"]["dead"], 0, "{status}");
    assert_eq!(status["workers"]["alive"], 2, "{status}");
    drop((workers, producer));
    env.cleanup().await;
}

/// A supervisor that stops reading (a restarted journald, a dead `ranq up`) leaves each role
/// writing its logs into a broken pipe. The roles keep working, and still drain and exit 0 on
/// SIGTERM: a failed log write must not take down the task that made it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_keeps_working_and_stops_cleanly_after_its_log_pipe_breaks() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    env.seed(5, 3).await;
    let base = format!("http://127.0.0.1:{}", free_port());
    let piped = |name: &str, args: &[&str]| {
        let mut cmd = env.ranq();
        cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        Proc::spawn(name, cmd)
    };
    let mut roles = [
        piped("producer", &["producer", "--schedule", "* * * * * *"]),
        piped("worker", &["worker"]),
        piped("serve", &["serve", "--listen", base.trim_start_matches("http://")]),
    ];
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(30), "the read API answers", || async {
        http.get(format!("{base}/healthz")).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    for role in &mut roles {
        role.close_output();
    }
    // Every tick and every batch logs a line into the broken pipes; a refresh written after the
    // break shows the fleet still works.
    let broke = ranq_core::fence::version_of(chrono::Utc::now());
    eventually(Duration::from_secs(30), "a refresh lands after the pipes broke", || async {
        let response = http.get(format!("{base}/v1/groups/1/top")).send().await.ok()?;
        let body: Value = response.json().await.ok()?;
        (body["version"].as_i64()? > broke).then_some(())
    })
    .await;
    for role in &mut roles {
        let exit = role.terminate(Duration::from_secs(30));
        assert!(exit.success(), "{} exited with {exit} after its log pipe broke", role.name);
    }
    env.cleanup().await;
}
