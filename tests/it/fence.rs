//! The version fence against real Redis: a late or duplicate write never replaces a newer one,
//! and a deleted group stays deleted against late refreshes.

use ranq_cache::{Outcome, Write};
use ranq_core::{Entry, Snapshot};
use ranq_tests::{Dialect, TestEnv};

fn snap(group: i64, version: i64, score: i64) -> Write {
    Write::Snapshot(Snapshot::new(group, version, vec![Entry { rank: 1, member: 1, score }]))
}

#[tokio::test]
async fn out_of_order_writes_never_move_a_version_backwards() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;

    assert_eq!(cache.write_batch(&[snap(1, 2_000, 20)]).await.unwrap(), vec![Outcome::Written]);
    // Late (older) and duplicate (same version) writes are both dropped.
    assert_eq!(
        cache.write_batch(&[snap(1, 1_000, 10), snap(1, 2_000, 99)]).await.unwrap(),
        vec![Outcome::Fenced, Outcome::Fenced]
    );
    let stored = cache.snapshot(1).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.entries[0].score), (2_000, 20));

    assert_eq!(cache.write_batch(&[snap(1, 3_000, 30)]).await.unwrap(), vec![Outcome::Written]);
    assert_eq!(cache.snapshot(1).await.unwrap().unwrap().entries[0].score, 30);
    env.cleanup().await;
}

#[tokio::test]
async fn a_deleted_group_is_not_resurrected_by_a_late_refresh() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    cache.write_batch(&[snap(5, 1_000, 1)]).await.unwrap();

    let absent = Write::Absent { group: 5, version: 2_000 };
    assert_eq!(cache.write_batch(&[absent]).await.unwrap(), vec![Outcome::Deleted]);
    assert!(cache.snapshot(5).await.unwrap().is_none());

    // A refresh that read the group before it was deleted arrives late: dropped.
    assert_eq!(cache.write_batch(&[snap(5, 1_500, 2)]).await.unwrap(), vec![Outcome::Fenced]);
    assert!(cache.snapshot(5).await.unwrap().is_none());
    // The group is created again and refreshed: written.
    assert_eq!(cache.write_batch(&[snap(5, 2_500, 3)]).await.unwrap(), vec![Outcome::Written]);
    assert_eq!(cache.fence_versions(&[5, 6]).await.unwrap(), vec![Some(2_500), None]);
    env.cleanup().await;
}

/// The index (group → version, behind `ranq status`) forgets a deleted group, even when the
/// deletion is retried after its first reply was lost or a late refresh of it arrives.
#[tokio::test]
async fn a_deleted_group_leaves_the_index_even_through_retries_and_late_writes() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    cache.write_batch(&[snap(5, 1_000, 1), snap(6, 1_000, 1)]).await.unwrap();
    assert_eq!(cache.cached_groups().await.unwrap(), vec![5, 6]);

    let absent = Write::Absent { group: 5, version: 2_000 };
    assert_eq!(cache.write_batch(std::slice::from_ref(&absent)).await.unwrap(), vec![Outcome::Deleted]);
    // The deletion's index update is lost (the worker died before it); the job runs again.
    let mut conn = env.redis().await;
    redis::cmd("ZADD").arg(cache.keys().index()).arg(1_000).arg(5).query_async::<()>(&mut conn).await.unwrap();
    assert_eq!(cache.write_batch(&[absent]).await.unwrap(), vec![Outcome::Fenced]);
    assert_eq!(cache.cached_groups().await.unwrap(), vec![6]);
    // A refresh that read the group before its deletion arrives late: fenced, and not indexed.
    assert_eq!(cache.write_batch(&[snap(5, 1_500, 2)]).await.unwrap(), vec![Outcome::Fenced]);
    assert_eq!(cache.cached_groups().await.unwrap(), vec![6]);
    env.cleanup().await;
}

#[tokio::test]
async fn a_corrupt_snapshot_is_replaced_by_the_next_refresh_and_read_as_an_error_meanwhile() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    let mut conn = env.redis().await;
    redis::cmd("SET").arg(cache.keys().top(9)).arg("not json").query_async::<()>(&mut conn).await.unwrap();

    assert!(cache.snapshot(9).await.is_err());
    assert_eq!(cache.write_batch(&[snap(9, 1_000, 1)]).await.unwrap(), vec![Outcome::Written]);
    assert_eq!(cache.snapshot(9).await.unwrap().unwrap().version, 1_000);
    env.cleanup().await;
}

#[tokio::test]
async fn the_fence_script_is_reloaded_after_redis_forgets_it() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    cache.write_batch(&[snap(1, 1_000, 1)]).await.unwrap();
    let mut conn = env.redis().await;
    redis::cmd("SCRIPT").arg("FLUSH").query_async::<()>(&mut conn).await.unwrap();
    assert_eq!(cache.write_batch(&[snap(1, 2_000, 2)]).await.unwrap(), vec![Outcome::Written]);
    env.cleanup().await;
}

/// One write of a generated history: which writer sends it, its version, and whether it says the
/// group is absent (a delete) or carries a snapshot (whose score is its version, to recognise it).
#[derive(Debug, Clone, Copy)]
struct Step {
    writer: usize,
    version: i64,
    absent: bool,
}

fn history() -> impl proptest::strategy::Strategy<Value = Vec<Step>> {
    use proptest::prelude::*;
    // Distinct versions in random order: a history of late, early and duplicate-free writes.
    (proptest::collection::btree_set(1i64..10_000, 1..24), proptest::collection::vec((0usize..3, any::<bool>()), 24))
        .prop_flat_map(|(versions, shapes)| {
            let steps: Vec<Step> = versions
                .into_iter()
                .zip(shapes)
                .map(|(version, (writer, absent))| Step { writer, version, absent: absent && version % 3 == 0 })
                .collect();
            Just(steps).prop_shuffle()
        })
}

fn write_of(group: i64, step: Step) -> Write {
    if step.absent { Write::Absent { group, version: step.version } } else { snap(group, step.version, step.version) }
}

/// Random interleavings against real Redis (R5): applied one by one, a write is taken exactly
/// when it is newer than every write taken before — so the cached version never decreases and
/// every late writer is counted as fenced; sent by three concurrent writers, the newest write
/// wins whatever the interleaving.
#[test]
fn the_fence_holds_under_random_interleavings_of_writers() {
    use proptest::test_runner::{Config, TestRunner};
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (env, cache) = runtime.block_on(async {
        let env = TestEnv::new(Dialect::Sqlite).await;
        let cache = env.cache().await;
        (env, cache)
    });
    let next_group = std::sync::atomic::AtomicI64::new(1);
    let mut runner = TestRunner::new(Config { cases: 64, failure_persistence: None, ..Config::default() });
    let result = runner.run(&history(), |steps| {
        runtime.block_on(async {
            // In order: the model is "the newest version taken so far".
            let group = next_group.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut newest: Option<i64> = None;
            for step in &steps {
                let outcome = cache.write_batch(&[write_of(group, *step)]).await.unwrap()[0];
                let taken = newest.is_none_or(|n| step.version > n);
                let expected = match (taken, step.absent) {
                    (false, _) => Outcome::Fenced,
                    (true, false) => Outcome::Written,
                    (true, true) => Outcome::Deleted,
                };
                assert_eq!(outcome, expected, "{step:?} after {newest:?}");
                if taken {
                    newest = Some(step.version);
                }
                let version = cache.fence_versions(&[group]).await.unwrap()[0];
                assert_eq!(version, newest, "the cached version is the newest taken");
            }

            // Concurrently: three writers, each sending its own steps in order.
            let group = next_group.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let writers = (0..3).map(|w| {
                let mine: Vec<Step> = steps.iter().copied().filter(|s| s.writer == w).collect();
                let cache = cache.clone();
                async move {
                    for step in mine {
                        cache.write_batch(&[write_of(group, step)]).await.unwrap();
                    }
                }
            });
            futures::future::join_all(writers).await;
            let last = *steps.iter().max_by_key(|s| s.version).unwrap();
            let stored = cache.snapshot(group).await.unwrap();
            match last.absent {
                true => assert!(stored.is_none(), "the newest write deleted the group: {stored:?}"),
                false => {
                    let stored = stored.expect("the newest write is a snapshot");
                    assert_eq!((stored.version, stored.entries[0].score), (last.version, last.version));
                }
            }
            assert_eq!(cache.fence_versions(&[group]).await.unwrap()[0], Some(last.version));
        });
        Ok(())
    });
    runtime.block_on(env.cleanup());
    result.unwrap();
}
