//! The producer's ticks against real Redis: one enqueue per scheduled tick across instances, the
//! audit trail `ranq status` reads, and dirty mode taking exactly the marked groups.

use chrono::{TimeZone, Utc};
use ranq_producer::{Producer, TickOutcome, read_last_tick, read_tick_counters};
use ranq_queue::{Queue, QueueOptions};
use ranq_runtime::{ProducerMode, Settings};
use ranq_tests::{Dialect, TestEnv};

async fn producer(env: &TestEnv, mode: ProducerMode, instance: &str) -> (Producer, Queue) {
    let cache = env.cache().await;
    let queue = Queue::new(cache.connection(), cache.keys(), &QueueOptions::default());
    let mut settings = Settings::default().producer;
    settings.mode = mode;
    settings.sweep_every = 0;
    (Producer::new(env.source().await, cache, queue.clone(), settings, instance.into()), queue)
}

#[tokio::test]
async fn each_scheduled_tick_is_enqueued_once_across_producers() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    env.seed(25, 3).await;
    let (a, queue) = producer(&env, ProducerMode::All, "a").await;
    let (b, _) = producer(&env, ProducerMode::All, "b").await;
    let at = Utc.with_ymd_and_hms(2026, 11, 25, 1, 2, 0).unwrap();

    let (first, second) = tokio::join!(a.tick(at), b.tick(at));
    let mut outcomes = vec![first.unwrap(), second.unwrap()];
    outcomes.sort_by_key(|o| matches!(o, TickOutcome::Duplicate));
    assert_eq!(outcomes, vec![TickOutcome::Enqueued { pushed: 25, deferred: 0 }, TickOutcome::Duplicate]);
    assert_eq!(queue.stats().await.unwrap().pending, 25);

    let later = at + chrono::Duration::minutes(1);
    assert_eq!(b.tick(later).await.unwrap(), TickOutcome::Enqueued { pushed: 25, deferred: 0 });

    let cache = env.cache().await;
    let mut conn = cache.connection();
    let counters = read_tick_counters(&mut conn, cache.keys()).await.unwrap();
    assert_eq!((counters.enqueued, counters.duplicates_skipped), (2, 1));
    let last = read_last_tick(&mut conn, cache.keys()).await.unwrap().unwrap();
    assert_eq!((last.id.as_str(), last.groups), ("2026-11-25T01:03:00Z", 25));
    env.cleanup().await;
}

#[tokio::test]
async fn dirty_mode_enqueues_only_marked_groups_and_consumes_the_marks() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    env.seed(25, 3).await;
    let (p, queue) = producer(&env, ProducerMode::Dirty, "a").await;
    let cache = env.cache().await;
    cache.mark_dirty(&[3, 5]).await.unwrap();
    let mut conn = cache.connection();
    redis::cmd("SADD").arg(cache.keys().dirty()).arg("not-a-group").query_async::<()>(&mut conn).await.unwrap();

    let at = Utc.with_ymd_and_hms(2026, 11, 25, 1, 2, 0).unwrap();
    assert_eq!(p.tick(at).await.unwrap(), TickOutcome::Enqueued { pushed: 2, deferred: 0 });
    assert_eq!(queue.stats().await.unwrap().pending, 2);
    let left: u64 = redis::cmd("SCARD").arg(cache.keys().dirty()).query_async(&mut conn).await.unwrap();
    assert_eq!(left, 0, "claimed marks are consumed");

    let next = at + chrono::Duration::seconds(2);
    assert_eq!(p.tick(next).await.unwrap(), TickOutcome::Enqueued { pushed: 0, deferred: 0 });
    env.cleanup().await;
}
