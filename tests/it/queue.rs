//! The refresh queue against real Redis: coalescing (at most one pending refresh per group) and
//! the bounded, chunked enqueue that keeps apalis-redis's due backlog small.

use std::time::Duration;

use ranq_core::RefreshJob;
use ranq_core::job::Reason;
use ranq_queue::{Backpressure, Queue};
use ranq_tests::{Dialect, TestEnv};

fn jobs(groups: &[i64]) -> Vec<RefreshJob> {
    groups.iter().map(|&g| RefreshJob::new(g, Reason::Manual)).collect()
}

#[tokio::test]
async fn a_group_has_at_most_one_pending_refresh_and_one_more_once_it_starts() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    let queue = Queue::new(cache.redis(), cache.keys(), &ranq_runtime::Settings::default().worker);
    let wait = Duration::from_secs(5);

    queue.enqueue(&jobs(&[1, 1, 2, 1]), &Backpressure { chunk: 2, max_backlog: 1_000, wait }).await.unwrap();
    assert_eq!(queue.stats().await.unwrap().pending, 2);
    queue.enqueue(&jobs(&[1, 2]), &Backpressure { chunk: 100, max_backlog: 1_000, wait }).await.unwrap();
    assert_eq!(queue.stats().await.unwrap().pending, 2, "marks coalesce into the pending jobs");

    // Group 1's job starts running: the next mark enqueues exactly one more refresh.
    queue.clear_pending(&[1]).await.unwrap();
    queue.enqueue(&jobs(&[1, 1, 1]), &Backpressure { chunk: 100, max_backlog: 1_000, wait }).await.unwrap();
    assert_eq!(queue.stats().await.unwrap().pending, 3);
    env.cleanup().await;
}

#[tokio::test]
async fn enqueueing_holds_back_when_the_backlog_is_full_and_reports_what_it_deferred() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let cache = env.cache().await;
    let queue = Queue::new(cache.redis(), cache.keys(), &ranq_runtime::Settings::default().worker);
    let groups: Vec<i64> = (1..=250).collect();

    // No worker drains the queue: after the first 100 (two chunks of 50) nothing more fits.
    let report = queue
        .enqueue(&jobs(&groups), &Backpressure { chunk: 50, max_backlog: 100, wait: Duration::from_millis(300) })
        .await
        .unwrap();
    assert_eq!((report.pushed, report.deferred), (100, 150));
    assert_eq!(queue.stats().await.unwrap().pending, 100);
    env.cleanup().await;
}
