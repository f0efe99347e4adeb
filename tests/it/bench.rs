//! `ranq-bench compare` at a tiny size: it runs the three architectures end to end (and again per
//! database latency), writes its report, cleans up after itself, and its figures show the
//! trade-offs the comparison is about.
//! (Speed itself is never asserted; the bench prints it.)

use ranq_tests::{Dialect, TestEnv};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_compare_measures_the_three_architectures_and_leaves_nothing_behind() {
    let env = TestEnv::new(Dialect::Postgres).await;
    let report = env.dir.join("compare.json");
    let out = env
        .ranq_bench()
        .args(["compare", "--groups", "50", "--members", "5", "--servers", "3"])
        .args(["--duration", "4s", "--period", "1s", "--read-rate", "200", "--json"])
        .arg(&report)
        .arg("--svg")
        .arg(env.dir.join("compare.svg"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let archs = report["architectures"].as_array().unwrap();
    let names: Vec<&str> = archs.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["1. sharded lock", "2. queue (ranq)", "3a. on demand + lock", "3b. on demand + lock + SWR"]);
    for name in &names {
        assert!(stdout.contains(name), "the table lists {name}: {stdout}");
    }
    for a in archs {
        assert!(a["reads"]["reads"].as_u64().unwrap() > 0, "{a}");
        assert_eq!(a["reads"]["errors"], 0, "{a}");
        assert!(a["db_queries_per_minute"].as_f64().unwrap() > 0.0, "{a}");
    }
    let [sharded, queue, on_demand, swr] = [&archs[0], &archs[1], &archs[2], &archs[3]];
    // Three servers race for every group's lock each round: at most one in three wins.
    let (attempts, conflicts) =
        (sharded["lock_attempts_per_minute"].as_f64().unwrap(), sharded["lock_conflicts_per_minute"].as_f64().unwrap());
    assert!(attempts > 0.0 && conflicts >= attempts * 0.5, "{sharded}");
    // The queue takes no per-group locks, and pre-computing serves every read after warm-up.
    assert_eq!(queue["lock_attempts_per_minute"], 0.0);
    for pre in [sharded, queue] {
        assert_eq!(pre["reads"]["miss_share"], 0.0, "{pre}");
        assert_eq!(pre["reads"]["cold_reads"], 0, "{pre}");
    }
    // On demand starts empty: its first readers pay for the computation. Without SWR it never
    // serves stale data; with it, reads past the TTL are answered STALE at once.
    assert!(on_demand["reads"]["cold_reads"].as_u64().unwrap() > 0, "{on_demand}");
    assert_eq!(on_demand["reads"]["stale_share"], 0.0, "{on_demand}");
    assert!(swr["reads"]["stale_share"].as_f64().unwrap() > 0.0, "{swr}");

    // The chart: one SVG, drawn again from the saved report by --replot; a file that is not a
    // report is a usage error.
    let svg = std::fs::read_to_string(env.dir.join("compare.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("database queries per minute"), "{}", &svg[..200.min(svg.len())]);
    let redrawn = env.dir.join("again.svg");
    let out = env
        .ranq_bench()
        .args(["compare", "--replot"])
        .arg(env.dir.join("compare.json"))
        .arg("--svg")
        .arg(&redrawn)
        .output()
        .unwrap();
    assert!(out.status.success() && redrawn.exists(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = env.ranq_bench().args(["compare", "--replot", "/etc/hostname", "--svg"]).arg(&redrawn).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));

    // The bench's schema and keys are gone.
    let mut conn = env.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", env.namespace)).query_async(&mut conn).await.unwrap();
    assert!(keys.is_empty(), "left behind: {:?}", &keys[..keys.len().min(5)]);
    env.cleanup().await;
}

/// `ranq-bench compare --db-latency`: every architecture again per latency, on the same data, with
/// the database behind the latency proxy, into one report and one Markdown table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_compare_sweeps_database_latency_through_the_proxy() {
    let env = TestEnv::new(Dialect::Postgres).await;
    let (report, table) = (env.dir.join("sweep.json"), env.dir.join("sweep.md"));
    let out = env
        .ranq_bench()
        .args(["compare", "--groups", "40", "--members", "5", "--servers", "2"])
        .args(["--duration", "3s", "--period", "1s", "--read-rate", "100", "--db-latency", "0ms,20ms", "--json"])
        .arg(&report)
        .arg("--markdown")
        .arg(&table)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let sweep = report["sweep"].as_array().unwrap_or_else(|| panic!("no sweep in {report}"));
    let latencies: Vec<f64> = sweep.iter().map(|r| r["db_latency_ms"].as_f64().unwrap()).collect();
    assert_eq!(latencies, [0.0, 20.0]);
    // The proxy is in the database's path: a computation on demand takes at least a round trip.
    let on_demand = &sweep[1]["architectures"][2];
    assert_eq!(on_demand["name"], "3a. on demand + lock");
    assert!(on_demand["reads"]["cold_reads"].as_u64() > Some(0), "{on_demand}");
    assert!(on_demand["reads"]["cold_latency_p50_ms"].as_f64() >= Some(20.0), "{on_demand}");
    for run in sweep {
        assert_eq!(run["architectures"].as_array().map(Vec::len), Some(4), "{run}");
    }
    // The table: a header, a delimiter, then a row per latency and architecture, latency first.
    let table = std::fs::read_to_string(&table).unwrap();
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 2 + 8, "{table}");
    assert!(rows[0].starts_with("| DB latency | architecture |"), "{table}");
    assert!(rows[2].starts_with("| 0 ms | 1. sharded lock |") && rows[9].starts_with("| 20 ms | 3b."), "{table}");
    // Refused before any measuring: a chart of a sweep, a latency twice (its runs would be the
    // same), and a table printed among a run's own output.
    for args in
        [&["--db-latency", "0ms,5ms", "--svg", "x.svg"][..], &["--db-latency", "5ms,0ms,5ms"], &["--markdown", "-"]]
    {
        let out = env.ranq_bench().arg("compare").args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: one line: {stderr}");
    }
    env.cleanup().await;
}

/// Runs `ranq-bench chaos` CI-sized (30 groups, two workers, a fault every second) with `args`
/// beside, and returns its JSON report and what it printed, once it exited 0 and reported what
/// must hold whatever the service: no group lost, no tick enqueued twice, ticks and reads made,
/// and no 5xx but the honest 503 while Redis is down.
fn chaos(env: &TestEnv, args: &[&str], faults: &[&str]) -> (Value, String) {
    let report = env.dir.join("chaos.json");
    let out = env
        .ranq_bench()
        .args(["chaos", "--every", "1s", "--groups", "30", "--members", "5", "--workers", "2"])
        .args(args)
        .arg("--json")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    for fault in faults {
        assert!(r["faults"][fault]["injected"].as_u64() >= Some(1), "{fault} injected: {r}");
    }
    assert_eq!(r["groups_lost"], 0, "{r}");
    assert_eq!(r["duplicate_ticks_executed"], 0, "{r}");
    assert!(r["ticks_enqueued"].as_u64() > Some(0), "{r}");
    assert_eq!(r["reads_5xx_other"], 0, "{r}");
    assert!(r["reads"].as_u64() > Some(0), "{r}");
    (r, stdout)
}

/// `ranq-bench chaos --cluster`: the fleet on a Redis Cluster of the bench's own, a master
/// failed over and another SIGKILLed among the other faults, and nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_chaos_on_a_cluster_fails_masters_over_and_loses_nothing() {
    let env = TestEnv::new(Dialect::Postgres).await;
    let faults = ["cluster_failover", "cluster_master_killed", "worker_killed", "database_cut"];
    let (r, _) = chaos(&env, &["--cluster", "--duration", "10s"], &faults);
    assert!(r["faults"].get("redis_restarted_empty").is_none(), "a cluster is failed over, not emptied: {r}");
    env.cleanup().await;
}

/// `ranq-bench chaos`: every kind of fault once against a real fleet on its own redis-server and
/// behind its own database proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_chaos_injects_every_fault_and_loses_nothing() {
    let env = TestEnv::new(Dialect::Postgres).await;
    let faults = ["worker_killed", "leader_killed", "leader_paused", "redis_restarted_empty", "database_cut"];
    let (_, stdout) = chaos(&env, &["--duration", "20s"], &faults);
    assert!(stdout.contains("groups lost (must be 0)"), "{stdout}");
    env.cleanup().await;
}
