//! The operator's commands against a real fleet: `refresh --wait` and its progress bar,
//! `status` (table, JSON, `--stale`, `--watch`), `config show`, `completions`, and the errors a
//! user can cause — each a one-liner with the right exit code and no password in it.

use std::process::Output;
use std::time::Duration;

use chrono::Utc;
use ranq_cache::Write;
use ranq_core::{Entry, Snapshot};
use ranq_tests::{Dialect, Proc, TestEnv, eventually};
use serde_json::Value;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "exit {}: {}", out.status, text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_all_wait_returns_once_two_thousand_groups_are_refreshed() {
    const GROUPS: usize = 2_000;
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(GROUPS as u32, 5).await;
    let mut worker = Proc::spawn("worker", {
        let mut cmd = env.ranq();
        cmd.arg("worker");
        cmd
    });
    let requested = ranq_core::fence::version_of(Utc::now());
    let out = env.ranq().args(["refresh", "--all", "--wait", "--timeout", "60s"]).output().unwrap();
    assert!(out.status.success(), "exit {}: {}", out.status, text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("all {GROUPS} groups refreshed")), "{}", text(&out.stderr));

    let groups: Vec<i64> = (1..=GROUPS as i64).collect();
    let versions = env.cache().await.fence_versions(&groups).await.unwrap();
    let stale: Vec<i64> =
        groups.iter().zip(&versions).filter(|(_, v)| v.is_none_or(|v| v <= requested)).map(|(g, _)| *g).collect();
    assert!(stale.is_empty(), "not refreshed after --wait said so: {stale:?}");
    assert!(worker.terminate(Duration::from_secs(30)).success());
    env.cleanup().await;
}

/// `script` gives `ranq refresh --wait` a terminal, as a user's shell would; the test refreshes
/// the groups one by one meanwhile, and the bar must show the count going up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_wait_draws_an_advancing_progress_bar_on_a_terminal() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    env.seed(5, 3).await;
    let command = format!("{} refresh 1 2 3 4 5 --wait --timeout 30s", ranq_tests::ranq_bin().display());
    let mut cmd = std::process::Command::new("script");
    cmd.args(["--quiet", "--flush", "--return", "--command", &command, "/dev/null"]).env("TERM", "xterm-256color");
    // `script` hands its environment on; take the test's wiring from `TestEnv::ranq`.
    let wired = env.ranq();
    for (key, value) in wired.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    cmd.current_dir(&env.dir).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("`script` (util-linux) is installed");

    let source = env.source().await;
    let refresher = ranq_worker::Refresher::new(source, env.cache().await);
    // The refreshes must come after the command's request: wait until its jobs are queued.
    eventually(Duration::from_secs(20), "refresh enqueued its jobs", || async {
        let out = env.ranq().args(["status", "--json"]).output().ok()?;
        let status: Value = serde_json::from_slice(&out.stdout).ok()?;
        (status["queue"]["pending"].as_u64()? >= 5).then_some(())
    })
    .await;
    for group in 1..=5 {
        refresher.refresh(&[group]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    let screen = text(&out.stdout);
    assert!(out.status.success(), "exit {}: {screen}", out.status);
    // Every redraw carries "<done>/5 groups"; the terminal saw the count climb.
    let counts: Vec<u32> = screen
        .split(" groups")
        .filter_map(|before| before.rsplit(' ').next()?.strip_suffix("/5")?.parse().ok())
        .collect();
    let mut distinct = counts.clone();
    distinct.dedup();
    assert!(distinct.len() >= 3, "the bar did not advance: {counts:?} in {screen:?}");
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "the count went down: {counts:?}");
    assert!(screen.contains("all 5 groups refreshed"), "{screen:?}");
    env.cleanup().await;
}

/// Snapshots of known ages, written straight into the cache: `status` must count and rank them
/// exactly (defaults: STALE after 90 s, MISS after 10 min).
#[tokio::test]
async fn status_counts_freshness_and_lists_the_stale_groups_oldest_first() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let now = Utc::now();
    let aged = |group: i64, secs: i64| {
        let version = ranq_core::fence::version_of(now - chrono::Duration::seconds(secs));
        Write::Snapshot(Snapshot::new(group, version, vec![Entry { rank: 1, member: 7, score: 1 }]))
    };
    let writes = [aged(1, 1), aged(2, 10), aged(3, 100), aged(4, 200), aged(5, 700)];
    env.cache().await.write_batch(&writes).await.unwrap();

    let status = json_of(&env.ranq().args(["status", "--json"]).output().unwrap());
    let g = &status["groups"];
    assert_eq!((g["cached"].as_u64(), g["fresh"].as_u64()), (Some(5), Some(2)), "{status}");
    assert_eq!((g["stale"].as_u64(), g["expired"].as_u64(), g["quarantined"].as_u64()), (Some(2), Some(1), Some(0)));
    let ms = |key: &str| g["age_ms"][key].as_u64().unwrap();
    // Nearest rank over 1 s, 10 s, 100 s, 200 s, 700 s (with slack for the time the run takes).
    assert!((100_000..105_000).contains(&ms("p50")), "{status}");
    assert!((700_000..705_000).contains(&ms("p99")) && (700_000..705_000).contains(&ms("max")), "{status}");
    // The default policy's buckets: quarters of stale_after (90 s), then max_age (10 min), then beyond.
    let buckets = ranq_tests::age_buckets(g);
    let expected =
        [(Some(22_500), 2), (Some(45_000), 0), (Some(67_500), 0), (Some(90_000), 0), (Some(600_000), 2), (None, 1)];
    assert_eq!(buckets, expected, "{status}");

    let stale = json_of(&env.ranq().args(["status", "--stale", "--json"]).output().unwrap());
    let listed: Vec<(i64, &str)> = stale["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["group"].as_i64().unwrap(), e["status"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, vec![(5, "MISS"), (4, "STALE"), (3, "STALE")], "{stale}");
    assert_eq!(stale["total"], 3);

    let limited = env.ranq().args(["status", "--stale", "--limit", "1"]).output().unwrap();
    let table = text(&limited.stdout);
    assert!(table.contains("3 groups older than stale_after (1m 30s)"), "{table}");
    assert!(table.contains("… and 2 more"), "{table}");

    let table = text(&env.ranq().arg("status").output().unwrap().stdout);
    assert!(table.contains("5 cached: 2 FRESH · 2 STALE · 1 MISS"), "{table}");
    assert!(table.contains("ages ≤22.5s 2 · ≤45.0s 0 · ≤1m 7s 0 · ≤1m 30s 0 · ≤10m 0s 2 · >10m 0s 1"), "{table}");
    assert!(table.contains("no leader"), "{table}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_reports_the_running_fleet() {
    const GROUPS: u64 = 40;
    let env = TestEnv::new(Dialect::Sqlite).await;
    env.seed(GROUPS as u32, 5).await;
    let producer = Proc::spawn("producer", {
        let mut cmd = env.ranq();
        cmd.args(["producer", "--schedule", "* * * * * *"]);
        cmd
    });
    let workers: Vec<Proc> = (0..2)
        .map(|i| {
            let mut cmd = env.ranq();
            cmd.arg("worker");
            Proc::spawn(&format!("worker-{i}"), cmd)
        })
        .collect();
    let status = eventually(Duration::from_secs(30), "the fleet has ticked and cached every group", || async {
        let out = env.ranq().args(["status", "--json"]).output().ok()?;
        let status: Value = serde_json::from_slice(&out.stdout).ok()?;
        (status["groups"]["fresh"] == GROUPS && status["workers"]["alive"] == 2).then_some(status)
    })
    .await;

    // Every field of the status report, with the values this fleet really has.
    let leader = &status["leader"];
    let id = leader["id"].as_str().unwrap();
    assert!(id.starts_with("producer-") && id.contains(&format!("-{}-", producer.pid())), "{status}");
    assert!(leader["since"].as_str().unwrap().parse::<chrono::DateTime<Utc>>().is_ok(), "{status}");
    assert!((1..=10_000).contains(&leader["lease_expires_in_ms"].as_u64().unwrap()), "{status}");
    let tick = status["last_tick"]["id"].as_str().unwrap().parse::<chrono::DateTime<Utc>>().unwrap();
    assert!(Utc::now() - tick < chrono::Duration::seconds(10), "{status}");
    assert!(status["last_tick"]["at"].as_str().unwrap().parse::<chrono::DateTime<Utc>>().is_ok());
    assert!(status["ticks"]["enqueued"].as_u64().unwrap() >= 1, "{status}");
    assert!(status["ticks"]["duplicates_skipped"].is_u64() && status["ticks"]["missed"].is_u64(), "{status}");
    for field in ["pending", "running", "dead"] {
        assert!(status["queue"][field].is_u64(), "{status}");
    }
    assert_eq!(status["queue"]["dead"], 0);
    let g = &status["groups"];
    assert_eq!(
        (g["cached"].as_u64(), g["stale"].as_u64(), g["quarantined"].as_u64()),
        (Some(GROUPS), Some(0), Some(0))
    );
    assert!(g["age_ms"]["p50"].as_u64() <= g["age_ms"]["max"].as_u64(), "{status}");
    assert_eq!(status["quarantine"], serde_json::json!([]));

    // --watch --json: one object a second until Ctrl-C, then exit 0.
    let watch = Proc::spawn("watch", {
        let mut cmd = env.ranq();
        cmd.args(["status", "--watch", "--json"]).stdout(std::process::Stdio::piped());
        cmd
    });
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let (code, lines) = watch.interrupt_and_collect(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let frames: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(frames.len() >= 2, "{lines}");
    assert!(frames.iter().all(|f| f["groups"]["cached"] == GROUPS), "{lines}");

    for mut proc in workers.into_iter().chain([producer]) {
        assert!(proc.terminate(Duration::from_secs(30)).success(), "{}", proc.name);
    }
    env.cleanup().await;
}

#[tokio::test]
async fn config_show_names_where_each_value_came_from_and_hides_passwords() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let file = env.dir.join("ranq.toml");
    std::fs::write(&file, "[worker]\nbatch_size = 64\n").unwrap();
    let out = env
        .ranq()
        .args(["config", "show", "--json", "--namespace", "flagged", "--config"])
        .arg(&file)
        .env("DATABASE_URL", "postgres://app:s3cret@db.example/app")
        .env("RANQ_READ__MAX_AGE", "2m")
        .output()
        .unwrap();
    assert!(!text(&out.stdout).contains("s3cret"), "{}", text(&out.stdout));
    let settings = json_of(&out);
    let find = |key: &str| {
        settings.as_array().unwrap().iter().find(|s| s["key"] == key).unwrap_or_else(|| panic!("{key}")).clone()
    };
    let origin = |key: &str| {
        let s = find(key);
        (s["value"].clone(), s["source"].as_str().unwrap().to_owned(), s["from"].as_str().map(str::to_owned))
    };
    let path = file.display().to_string();
    assert_eq!(origin("worker.batch_size"), (64.into(), "file".into(), Some(path)));
    assert_eq!(origin("read.max_age"), ("2m".into(), "env".into(), Some("RANQ_READ__MAX_AGE".into())));
    assert_eq!(origin("namespace"), ("flagged".into(), "flag".into(), Some("--namespace".into())));
    assert_eq!(
        origin("database_url"),
        ("postgres://app:***@db.example/app".into(), "env".into(), Some("DATABASE_URL".into()))
    );
    assert_eq!(origin("read.stale_after"), ("1m 30s".into(), "default".into(), None));

    let toml = env.ranq().args(["config", "show"]).output().unwrap();
    let toml = text(&toml.stdout);
    assert!(toml.contains("\n[worker]\n") && toml.contains("batch_size = 128  # default"), "{toml}");

    let script = env.ranq().args(["completions", "bash"]).output().unwrap();
    assert!(script.status.success() && text(&script.stdout).contains("refresh"), "{}", text(&script.stderr));
    env.cleanup().await;
}

/// The errors of the operator-experience contract: one line, exit 2 for what the user typed,
/// exit 1 for what failed, and never a password, on stdout or stderr.
#[tokio::test]
async fn user_errors_are_one_line_with_the_right_exit_code_and_no_password() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    for args in [&["status"][..], &["get", "1"], &["dirty", "1"], &["refresh", "1"], &["status", "--watch"]] {
        let out = env.ranq().args(args).env("REDIS_URL", "redis://:hunter2@127.0.0.1:1").output().unwrap();
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"), "{args:?}: {stdout}{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("redis://:***@127.0.0.1:1"), "{args:?}: {stderr}");
    }

    // A URL typed where no argument goes is quoted back by the usage error, password hidden.
    let out = env.ranq().args(["seed", "postgres://app:hunter2@db/app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("postgres://app:***@db/app"), "{}", text(&out.stderr));

    let file = env.dir.join("typo.toml");
    std::fs::write(&file, "[read]\nmax_aeg = \"5m\"\n").unwrap();
    let out = env.ranq().args(["status", "--config"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unknown key read.max_aeg") && stderr.contains("did you mean read.max_age?"), "{stderr}");

    for (args, needle) in [
        (&["refresh", "--bogus"][..], "--bogus"),
        (&["status", "--redis-url", "localhost:6379"], "redis_url is not a Redis URL"),
        (&["refresh", "--all", "--database-url", "oracle://app@db/app"], "database_url must be postgres://"),
        (&["producer", "--schedule", "61 * * * * *"], "producer.schedule \"61 * * * * *\""),
        (&["refresh", "--from-file", "/nonexistent/ids.txt"], "/nonexistent/ids.txt"),
        (&["status", "--limit", "5"], "--stale"),
        (&["completions", "tcsh"], "tcsh"),
    ] {
        let out = env.ranq().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(needle), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr).trim().lines().count(), 1, "{args:?}: {}", text(&out.stderr));
    }

    // A fleet started before `ranq migrate` says so at once, instead of failing every tick.
    let unmigrated = format!("sqlite:{}", env.dir.join("unmigrated.db").display());
    for role in ["producer", "worker"] {
        let out = env.ranq().arg(role).env("DATABASE_URL", &unmigrated).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{role}: {}", text(&out.stderr));
        let last = text(&out.stderr).trim().lines().last().unwrap_or_default().to_owned();
        assert!(last.starts_with("error: ") && last.contains("(run `ranq migrate` first)"), "{role}: {last}");
    }
    env.cleanup().await;
}

#[tokio::test]
async fn refresh_takes_ids_from_a_file_and_names_the_line_of_a_bad_one() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let ids = env.dir.join("ids.txt");
    std::fs::write(&ids, "3 1,2\n\n2\n").unwrap();
    let out = env.ranq().args(["refresh", "9", "--from-file"]).arg(&ids).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("enqueued 4 refresh jobs"), "{}", text(&out.stderr));

    std::fs::write(&ids, "1\n2 x3\n").unwrap();
    let out = env.ranq().args(["refresh", "--from-file"]).arg(&ids).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("\"x3\" is not a 64-bit integer (") && text(&out.stderr).contains("line 2)"));
    env.cleanup().await;
}
