//! The producer against real Redis: one leader at a time, fenced tick claims, missed ticks
//! counted, the audit trail `ranq status` reads, and dirty mode taking exactly the marked groups.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeZone, Utc};
use ranq_producer::{LeaseState, Producer, TickOutcome};
use ranq_queue::Queue;
use ranq_runtime::{ProducerMode, Settings};
use ranq_tests::{Dialect, TestEnv};

async fn producer(env: &TestEnv, mode: ProducerMode, instance: &str) -> (Producer, Queue) {
    let cache = env.cache().await;
    let queue = Queue::new(cache.redis(), cache.keys(), &Settings::default().worker);
    let mut settings = Settings::default().producer;
    settings.mode = mode;
    settings.sweep_every = 0;
    settings.lease_ttl = Duration::from_secs(10);
    (Producer::new(env.source().await, cache, queue.clone(), settings, instance).unwrap(), queue)
}

fn minute(hour: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, hour, min, 0).unwrap()
}

#[tokio::test]
async fn only_the_leader_enqueues_and_each_tick_is_enqueued_once() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    env.seed(25, 3).await;
    let (a, queue) = producer(&env, ProducerMode::All, "a").await;
    let (b, _) = producer(&env, ProducerMode::All, "b").await;
    let LeaseState::Acquired(first) = a.keep_lease().await.unwrap() else { panic!("a leads") };
    assert_eq!(b.keep_lease().await.unwrap(), LeaseState::Standby);
    assert_eq!(a.keep_lease().await.unwrap(), LeaseState::Renewed(first));

    let at = minute(1, 2);
    assert_eq!(a.tick(at).await.unwrap(), TickOutcome::Enqueued { pushed: 25, deferred: 0 });
    assert_eq!(b.tick(at).await.unwrap(), TickOutcome::Standby);
    assert_eq!(a.tick(at).await.unwrap(), TickOutcome::Duplicate, "the same tick fired twice");
    assert_eq!(queue.stats().await.unwrap().pending, 25);

    // The leader stops (SIGTERM releases the lease): the standby takes over at its next round,
    // and a tick the old leader already enqueued is not enqueued again.
    a.release().await.unwrap();
    assert_eq!(b.keep_lease().await.unwrap(), LeaseState::Acquired(first + 1));
    assert_eq!(b.tick(at).await.unwrap(), TickOutcome::Duplicate);
    assert_eq!(b.tick(minute(1, 3)).await.unwrap(), TickOutcome::Enqueued { pushed: 25, deferred: 0 });

    let cache = env.cache().await;
    let counters = cache.ledger().counters().await.unwrap();
    assert_eq!((counters.enqueued, counters.duplicates_skipped), (2, 2));
    let last = cache.ledger().last_tick().await.unwrap().unwrap();
    assert_eq!((last.id.as_str(), last.groups), ("2026-11-25T01:03:00Z", 25));
    let leader = cache.ledger().leader().await.unwrap().unwrap();
    assert_eq!((leader.id.as_str(), leader.token), ("b", first + 1));
    assert!(leader.lease_expires_in_ms > 0 && leader.lease_expires_in_ms <= 10_000);
    env.cleanup().await;
}

#[tokio::test]
async fn a_deposed_leader_cannot_enqueue_even_before_it_notices() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    env.seed(5, 3).await;
    let (a, queue) = producer(&env, ProducerMode::All, "a").await;
    let (b, _) = producer(&env, ProducerMode::All, "b").await;
    let LeaseState::Acquired(old) = a.keep_lease().await.unwrap() else { panic!("a leads") };
    // a's lease lapses in Redis (say a was paused) and b takes over; a still believes it leads.
    let cache = env.cache().await;
    let mut conn = env.redis().await;
    redis::cmd("DEL").arg(cache.keys().leader()).query_async::<()>(&mut conn).await.unwrap();
    assert_eq!(b.keep_lease().await.unwrap(), LeaseState::Acquired(old + 1));
    assert!(a.token().is_some(), "a has not renewed yet");

    assert_eq!(a.tick(minute(1, 2)).await.unwrap(), TickOutcome::Standby, "the claim is fenced by a's old token");
    assert_eq!(a.token(), None);
    assert_eq!(queue.stats().await.unwrap().pending, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn fencing_tokens_keep_rising_after_redis_loses_its_data() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let (a, _) = producer(&env, ProducerMode::All, "a").await;
    let (b, _) = producer(&env, ProducerMode::All, "b").await;
    let LeaseState::Acquired(before) = a.keep_lease().await.unwrap() else { panic!("a leads") };
    let cache = env.cache().await;
    let mut conn = env.redis().await;
    for key in [cache.keys().leader(), cache.keys().leader_token()] {
        redis::cmd("DEL").arg(key).query_async::<()>(&mut conn).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let LeaseState::Acquired(after) = b.keep_lease().await.unwrap() else { panic!("b leads") };
    assert!(after > before, "token {after} after the loss must exceed {before}");
    env.cleanup().await;
}

#[tokio::test]
async fn ticks_that_passed_without_a_leader_are_counted_as_missed() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    env.seed(2, 1).await;
    let (a, _) = producer(&env, ProducerMode::All, "a").await;
    let (b, _) = producer(&env, ProducerMode::All, "b").await;
    a.keep_lease().await.unwrap();
    let five_minutes_ago =
        Utc::now().duration_trunc(chrono::Duration::minutes(1)).unwrap() - chrono::Duration::minutes(5);
    a.tick(five_minutes_ago).await.unwrap();
    a.release().await.unwrap();
    b.keep_lease().await.unwrap();

    let cache = env.cache().await;
    let missed = cache.ledger().counters().await.unwrap().missed;
    // The every-minute slots after the last tick up to now: 4, or 5 once the current minute began.
    assert!((4..=5).contains(&missed), "missed {missed}");
    env.cleanup().await;
}

#[tokio::test]
async fn dirty_mode_enqueues_only_marked_groups_and_consumes_the_marks() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    env.seed(25, 3).await;
    let (p, queue) = producer(&env, ProducerMode::Dirty, "a").await;
    p.keep_lease().await.unwrap();
    let cache = env.cache().await;
    let mut conn = env.redis().await;

    // An empty cache is swept in full, whatever the mode.
    assert_eq!(p.tick(minute(1, 1)).await.unwrap(), TickOutcome::Enqueued { pushed: 25, deferred: 0 });
    ranq_worker::Refresher::new(env.source().await, cache.clone())
        .refresh(&(1..=25).collect::<Vec<_>>())
        .await
        .unwrap();

    cache.mark_dirty(&[3, 5]).await.unwrap();
    redis::cmd("SADD").arg(cache.keys().dirty()).arg("not-a-group").query_async::<()>(&mut conn).await.unwrap();
    assert_eq!(p.tick(minute(1, 2)).await.unwrap(), TickOutcome::Enqueued { pushed: 2, deferred: 0 });
    // Groups 3 and 5 still have their sweep jobs pending: the marks coalesce into them.
    assert_eq!(queue.stats().await.unwrap().pending, 25);
    let left: u64 = redis::cmd("SCARD").arg(cache.keys().dirty()).query_async(&mut conn).await.unwrap();
    assert_eq!(left, 0, "claimed marks are consumed");
    assert_eq!(p.tick(minute(1, 3)).await.unwrap(), TickOutcome::Enqueued { pushed: 0, deferred: 0 });

    // Marks claimed by a tick that died before enqueueing are taken again by the next tick.
    redis::cmd("SADD").arg(cache.keys().dirty_claimed()).arg(7).query_async::<()>(&mut conn).await.unwrap();
    cache.mark_dirty(&[8]).await.unwrap();
    assert_eq!(p.tick(minute(1, 4)).await.unwrap(), TickOutcome::Enqueued { pushed: 2, deferred: 0 });
    env.cleanup().await;
}
