//! ARCHITECTURE.md's dependency invariants, checked against the manifests so they cannot rot.

use std::collections::BTreeSet;
use std::path::Path;

/// The `ranq-*` crates a crate depends on (normal dependencies), and all its dependency names.
fn dependencies(krate: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates").join(krate).join("Cargo.toml");
    let manifest = std::fs::read_to_string(&path).unwrap();
    let mut in_deps = false;
    let mut all = BTreeSet::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once(['.', '=']) {
            let name = name.trim();
            if !name.is_empty() {
                all.insert(name.to_owned());
            }
        }
    }
    let ranq = all.iter().filter(|d| d.starts_with("ranq-")).cloned().collect();
    (ranq, all)
}

#[test]
fn the_read_crate_never_depends_on_the_database_crate() {
    let (ranq, all) = dependencies("ranq-read");
    assert!(!ranq.contains("ranq-db"), "{ranq:?}");
    assert!(!all.contains("sqlx"), "{all:?}");
}

#[test]
fn the_status_crate_reads_redis_only() {
    let (ranq, all) = dependencies("ranq-status");
    assert!(!ranq.contains("ranq-db") && !all.contains("sqlx"), "{all:?}");
    let allowed: BTreeSet<String> = ["ranq-core", "ranq-cache", "ranq-queue"].map(String::from).into();
    assert!(ranq.is_subset(&allowed), "ranq-status depends on {ranq:?}");
}

#[test]
fn the_core_crate_does_no_io() {
    let (ranq, all) = dependencies("ranq-core");
    assert!(ranq.is_empty(), "{ranq:?}");
    let allowed: BTreeSet<String> = ["chrono", "serde", "serde_json", "thiserror"].map(String::from).into();
    assert!(all.is_subset(&allowed), "ranq-core depends on {:?}", all.difference(&allowed).collect::<Vec<_>>());
}

#[test]
fn arrows_point_from_roles_to_infrastructure_to_core() {
    let infrastructure = ["ranq-db", "ranq-cache", "ranq-queue"];
    let roles = ["ranq-producer", "ranq-worker", "ranq-read", "ranq-cli"];
    let (status, _) = dependencies("ranq-status");
    assert!(!status.iter().any(|d| roles.contains(&d.as_str())), "ranq-status depends on {status:?}");
    for krate in infrastructure {
        let (ranq, _) = dependencies(krate);
        let bad: Vec<_> =
            ranq.iter().filter(|d| roles.contains(&d.as_str()) || infrastructure.contains(&d.as_str())).collect();
        assert!(bad.is_empty(), "{krate} depends on {bad:?}");
    }
    let (runtime, _) = dependencies("ranq-runtime");
    assert_eq!(runtime, BTreeSet::from(["ranq-core".to_owned()]));
    for krate in ["ranq-producer", "ranq-worker", "ranq-read"] {
        let (ranq, _) = dependencies(krate);
        assert!(!ranq.contains("ranq-cli"), "{krate} depends on the binary");
    }
}
