//! One repair at a time, and not too often: a storm of failing commands (every command of a
//! process meeting the same dead master, the same wedged client) starts one search for the
//! master or one rebuild of the client, not one each, and the next no sooner than a set time
//! after it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

pub(crate) struct SingleFlight {
    /// Set while a flight runs.
    running: AtomicBool,
    /// When the last flight started.
    last: Mutex<Option<Instant>>,
    /// The least time between the starts of two flights.
    every: Duration,
}

/// Clears [`SingleFlight::running`] when the flight ends, however it ends.
struct Running(Arc<SingleFlight>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

impl SingleFlight {
    pub fn new(every: Duration) -> Arc<Self> {
        Arc::new(Self { running: AtomicBool::new(false), last: Mutex::new(None), every })
    }

    /// Whether a flight is under way.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Runs `work` in a task of its own, unless a flight runs already; it starts no sooner than
    /// `every` after the previous one started. Whether it was started.
    pub fn spawn(self: &Arc<Self>, work: impl Future<Output = ()> + Send + 'static) -> bool {
        if self.running.swap(true, Ordering::AcqRel) {
            return false;
        }
        let running = Running(self.clone());
        let start = {
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            let start = last.map_or_else(Instant::now, |t| (t + self.every).max(Instant::now()));
            *last = Some(start);
            start
        };
        tokio::spawn(async move {
            let _running = running;
            tokio::time::sleep_until(start).await;
            work.await;
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[tokio::test(start_paused = true)]
    async fn one_flight_at_a_time_and_the_next_no_sooner_than_its_interval() {
        let flight = SingleFlight::new(Duration::from_secs(5));
        let runs = Arc::new(AtomicU32::new(0));
        let started = Instant::now();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let work = |runs: Arc<AtomicU32>, starts: Arc<Mutex<Vec<Duration>>>| async move {
            starts.lock().expect("not poisoned").push(started.elapsed());
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let started_flights = (0..10).filter(|_| flight.spawn(work(runs.clone(), starts.clone()))).count();
        assert_eq!(started_flights, 1);
        assert!(flight.is_running());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "ten asks during one flight start one");
        assert!(!flight.is_running());
        assert!(flight.spawn(work(runs.clone(), starts.clone())));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(*starts.lock().expect("not poisoned"), [Duration::ZERO, Duration::from_secs(5)]);
    }
}
