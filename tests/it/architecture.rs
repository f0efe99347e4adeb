//! ARCHITECTURE.md's dependency invariants, checked against `cargo metadata` so they cannot rot:
//! the direction of the arrows between ranq's crates, which crates may talk to Redis or SQL at
//! all, and what the production binary is built from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;

/// The workspace as cargo resolves it: each package's normal (not dev, not build) dependencies
/// by name, for every package in the build graph.
struct Graph {
    normal: BTreeMap<String, BTreeSet<String>>,
}

fn graph() -> &'static Graph {
    static GRAPH: OnceLock<Graph> = OnceLock::new();
    GRAPH.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // This machine's platform only: the packages of others are never downloaded.
        let rustc = std::process::Command::new("rustc").arg("-vV").output().expect("rustc runs");
        let host = String::from_utf8_lossy(&rustc.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
            .expect("rustc names its host");
        let out = std::process::Command::new(cargo)
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .args(["metadata", "--format-version", "1", "--locked", "--offline", "--filter-platform", &host])
            .output()
            .expect("cargo metadata runs");
        assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
        let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
        let names: BTreeMap<&str, &str> = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
            .collect();
        let mut normal = BTreeMap::new();
        for node in meta["resolve"]["nodes"].as_array().unwrap() {
            let deps = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null()))
                .map(|d| names[d["pkg"].as_str().unwrap()].to_owned())
                .collect();
            normal.insert(names[node["id"].as_str().unwrap()].to_owned(), deps);
        }
        Graph { normal }
    })
}

impl Graph {
    fn deps(&self, krate: &str) -> &BTreeSet<String> {
        self.normal.get(krate).unwrap_or_else(|| panic!("{krate} is not in the workspace"))
    }

    fn ranq_deps(&self, krate: &str) -> BTreeSet<&str> {
        self.deps(krate).iter().map(String::as_str).filter(|d| d.starts_with("ranq-")).collect()
    }

    /// Every package `krate` is built from, itself excluded, following normal dependencies.
    fn closure(&self, krate: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![krate.to_owned()];
        while let Some(next) = todo.pop() {
            for dep in self.normal.get(&next).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        seen
    }
}

/// The crates that make the `ranq` binary and its image.
const PRODUCTION: [&str; 12] = [
    "ranq-core",
    "ranq-runtime",
    "ranq-redis",
    "ranq-db",
    "ranq-cache",
    "ranq-queue",
    "ranq-status",
    "ranq-launch",
    "ranq-producer",
    "ranq-worker",
    "ranq-read",
    "ranq-cli",
];

#[test]
fn the_production_binary_is_built_without_the_lab() {
    let built_from = graph().closure("ranq-cli");
    let lab = ["ranq-bench", "ranq-faults", "ranq-tests", "plotters", "reqwest", "rand_distr", "fantoccini"];
    let found: Vec<&str> = lab.into_iter().filter(|c| built_from.contains(*c)).collect();
    assert!(found.is_empty(), "the ranq binary depends on {found:?}");
    for krate in PRODUCTION {
        if krate != "ranq-cli" {
            assert!(built_from.contains(krate), "{krate} is listed as production but ranq does not use it");
        }
    }
}

#[test]
fn only_the_connection_owners_talk_to_redis_and_only_ranq_db_to_sql() {
    let redis_owners = ["ranq-redis", "ranq-cache", "ranq-queue"];
    for krate in PRODUCTION {
        let deps = graph().deps(krate);
        let talks_redis = deps.contains("redis") || deps.contains("apalis-redis");
        assert!(!talks_redis || redis_owners.contains(&krate), "{krate} depends on a Redis client: {deps:?}");
        assert!(!deps.contains("sqlx") || krate == "ranq-db", "{krate} depends on sqlx");
    }
}

#[test]
fn the_read_crate_never_depends_on_the_database_crate() {
    let built_from = graph().closure("ranq-read");
    assert!(!built_from.contains("ranq-db") && !built_from.contains("sqlx"), "{built_from:?}");
}

#[test]
fn the_status_crate_reads_redis_only() {
    let built_from = graph().closure("ranq-status");
    assert!(!built_from.contains("ranq-db") && !built_from.contains("sqlx"), "{built_from:?}");
    let allowed: BTreeSet<&str> = ["ranq-core", "ranq-cache", "ranq-queue"].into();
    assert!(graph().ranq_deps("ranq-status").is_subset(&allowed), "{:?}", graph().ranq_deps("ranq-status"));
}

#[test]
fn the_core_crate_does_no_io() {
    assert!(graph().ranq_deps("ranq-core").is_empty());
    let allowed: BTreeSet<String> = ["chrono", "serde", "serde_json", "thiserror"].map(String::from).into();
    let deps = graph().deps("ranq-core");
    assert!(deps.is_subset(&allowed), "ranq-core depends on {:?}", deps.difference(&allowed).collect::<Vec<_>>());
}

#[test]
fn arrows_point_from_binaries_to_roles_to_infrastructure_to_core() {
    let g = graph();
    let below = |krate: &str, allowed: &[&str]| {
        let deps = g.ranq_deps(krate);
        let bad: Vec<&&str> = deps.iter().filter(|d| !allowed.contains(d)).collect();
        assert!(bad.is_empty(), "{krate} depends on {bad:?}");
    };
    below("ranq-core", &[]);
    below("ranq-runtime", &["ranq-core"]);
    below("ranq-launch", &[]);
    below("ranq-redis", &["ranq-core", "ranq-runtime"]);
    below("ranq-db", &["ranq-core"]);
    // Infrastructure crates do not depend on each other, only on the connection beneath them.
    below("ranq-cache", &["ranq-core", "ranq-redis"]);
    below("ranq-queue", &["ranq-core", "ranq-redis", "ranq-runtime"]);
    below("ranq-status", &["ranq-core", "ranq-cache", "ranq-queue"]);
    let infrastructure = ["ranq-core", "ranq-runtime", "ranq-db", "ranq-cache", "ranq-queue", "ranq-status"];
    for role in ["ranq-producer", "ranq-worker", "ranq-read"] {
        below(role, &infrastructure);
    }
    for (krate, deps) in &g.normal {
        if krate.starts_with("ranq-") {
            assert!(!deps.contains("ranq-cli") && !deps.contains("ranq-bench"), "{krate} depends on a binary");
        }
    }
}
