//! One refresh cycle, in-process, on every database: every group's cached top-100 equals the SQL
//! truth, empty groups cache as `entries: []`, and groups gone from the source lose their key.

use std::time::Duration;

use ranq_cache::{Outcome, QuarantinePolicy};
use ranq_core::TOP_N;
use ranq_tests::{Dialect, TestEnv, execute, truth};
use ranq_worker::{Batcher, BatcherOptions, Refreshed, Refresher};

const QUARANTINE: QuarantinePolicy = QuarantinePolicy { after: 3, retry: Duration::from_secs(600) };

async fn every_group_equals_the_sql_truth_after_one_refresh(dialect: Dialect) {
    let env = TestEnv::new(dialect).await;
    env.seed(40, 250).await;
    let source = env.source().await;
    let sql = env.sql().await;
    // A group with no members, and ties on score to exercise the tie-breaks.
    execute(&sql, "INSERT INTO ranq_groups (id, name) VALUES (41, 'empty')").await;
    execute(&sql, "UPDATE ranq_scores SET score = 5000 WHERE group_id = 3 AND member_id <= 150").await;
    let cache = env.cache().await;

    let refresher = Refresher::new(source.clone(), cache.clone());
    let groups: Vec<i64> = source.group_ids().await.unwrap();
    assert_eq!(groups.len(), 41);
    for batch in groups.chunks(16) {
        let outcomes = refresher.refresh(batch).await.unwrap();
        assert!(outcomes.values().all(|o| *o == Refreshed::Done(Outcome::Written)), "{outcomes:?}");
    }

    for &group in &groups {
        let cached = cache.snapshot(group).await.unwrap().expect("cached");
        let expected = truth(&sql, group).await;
        assert_eq!(cached.entries, expected, "group {group}");
        assert_eq!(cached.entries.len(), if group == 41 { 0 } else { TOP_N });
    }
    env.cleanup().await;
}

on_each_dialect!(every_group_equals_the_sql_truth_after_one_refresh, [
    postgres => Postgres, mariadb => MariaDb, sqlite => Sqlite
]);

async fn a_group_removed_from_the_source_is_removed_from_the_cache(dialect: Dialect) {
    let env = TestEnv::new(dialect).await;
    env.seed(3, 10).await;
    let (source, cache) = (env.source().await, env.cache().await);
    let sql = env.sql().await;
    let refresher = Refresher::new(source.clone(), cache.clone());
    refresher.refresh(&[1, 2, 3]).await.unwrap();

    execute(&sql, "DELETE FROM ranq_groups WHERE id = 2").await;
    let outcomes = refresher.refresh(&[1, 2, 3, 999]).await.unwrap();
    assert_eq!(outcomes[&2], Refreshed::Done(Outcome::Deleted));
    assert_eq!(outcomes[&999], Refreshed::Done(Outcome::Deleted), "an unknown group is recorded as absent");
    assert!(cache.snapshot(2).await.unwrap().is_none());
    assert!(cache.snapshot(1).await.unwrap().is_some());
    env.cleanup().await;
}

on_each_dialect!(a_group_removed_from_the_source_is_removed_from_the_cache, [
    postgres => Postgres, mariadb => MariaDb, sqlite => Sqlite
]);

/// Asks `batcher` for every group at once, as concurrent job handlers do; each group's outcome.
async fn refresh_concurrently(
    batcher: &Batcher,
    groups: impl IntoIterator<Item = i64>,
) -> Vec<(i64, Result<Refreshed, ranq_worker::BatchError>)> {
    let handles: Vec<_> = groups
        .into_iter()
        .map(|g| {
            let b = batcher.clone();
            tokio::spawn(async move { (g, b.refresh(g).await) })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(handles.len());
    for handle in handles {
        outcomes.push(handle.await.unwrap());
    }
    outcomes
}

#[tokio::test]
async fn concurrent_requests_are_batched_and_each_gets_its_groups_outcome() {
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(50, 20).await;
    let (source, cache) = (env.source().await, env.cache().await);
    let sql = env.sql().await;
    let options = BatcherOptions { batch_size: 16, batch_wait: Duration::from_millis(20), quarantine: QUARANTINE };
    let (batcher, task) = Batcher::spawn(Refresher::new(source.clone(), cache.clone()), options, None);

    for (group, outcome) in refresh_concurrently(&batcher, (1..=50).chain([404])).await {
        let expected = if group == 404 { Outcome::Deleted } else { Outcome::Written };
        assert_eq!(outcome.unwrap(), Refreshed::Done(expected), "group {group}");
    }
    let batches = batcher.totals().batches.load(std::sync::atomic::Ordering::Relaxed);
    assert!(batches < 51, "51 requests ran as {batches} batches: they were not batched");
    for g in 1..=50 {
        assert_eq!(cache.snapshot(g).await.unwrap().unwrap().entries, truth(&sql, g).await);
    }
    drop(batcher);
    task.await.unwrap();
    env.cleanup().await;
}

/// Versions come from the database's clock (SQLite's from this host's), so refreshes on hosts
/// whose clocks disagree are still ordered as the database saw them.
async fn versions_increase_with_each_read(dialect: Dialect) {
    let env = TestEnv::new(dialect).await;
    env.seed(1, 5).await;
    let source = env.source().await;
    let first = source.top_n(&[1]).await.unwrap().version;
    let second = source.top_n(&[1]).await.unwrap().version;
    assert!(second > first, "{second} <= {first}");
    let now = chrono::Utc::now().timestamp_micros();
    assert!((now - second).abs() < 60_000_000, "version {second} is not a time in microseconds near {now}");
    env.cleanup().await;
}

on_each_dialect!(versions_increase_with_each_read, [postgres => Postgres, mariadb => MariaDb, sqlite => Sqlite]);

/// A schema change under a running worker (here: a renamed column) fails every group alike. The
/// batch fails as a whole, its jobs go back to the queue, and no group is marked as failing on its
/// own, so none is quarantined for the operator's mistake; once the schema is back, it refreshes.
async fn an_error_in_the_schema_fails_the_batch_without_blaming_any_group(dialect: Dialect) {
    let env = TestEnv::new(dialect).await;
    env.seed(8, 10).await;
    let (source, cache) = (env.source().await, env.cache().await);
    let sql = env.sql().await;
    let quarantine = QuarantinePolicy { after: 1, retry: Duration::from_secs(600) };
    let options = BatcherOptions { batch_size: 8, batch_wait: Duration::from_millis(20), quarantine };
    let (batcher, task) = Batcher::spawn(Refresher::new(source.clone(), cache.clone()), options, None);

    execute(&sql, "ALTER TABLE ranq_scores RENAME COLUMN score TO points").await;
    for (group, outcome) in refresh_concurrently(&batcher, 1..=8).await {
        let error = outcome.expect_err("the whole batch fails").to_string();
        assert!(error.contains("score"), "group {group}: {error}");
        assert_eq!(cache.health(group).await.unwrap(), None, "group {group} was blamed for the schema");
    }
    assert_eq!(cache.quarantined(10).await.unwrap().total, 0);

    execute(&sql, "ALTER TABLE ranq_scores RENAME COLUMN points TO score").await;
    assert_eq!(batcher.refresh(3).await.unwrap(), Refreshed::Done(Outcome::Written));
    drop(batcher);
    task.await.unwrap();
    env.cleanup().await;
}

on_each_dialect!(an_error_in_the_schema_fails_the_batch_without_blaming_any_group, [
    postgres => Postgres, mariadb => MariaDb
]);
