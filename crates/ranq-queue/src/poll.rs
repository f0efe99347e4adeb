//! A poll strategy that wakes an idle worker on a fixed interval.
//!
//! When a fetch returns nothing, apalis-redis parks the worker until something wakes it, and its
//! own interval strategy stops firing after about a second (measured), leaving new jobs unseen.
//! This strategy keeps a tokio interval registered with the worker's waker at all times.

use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::{PollSnapshot, PollStrategy};
use tokio::time::{Interval, MissedTickBehavior};

#[derive(Debug)]
pub struct TickPoll {
    interval: Interval,
}

impl TickPoll {
    pub fn new(every: Duration) -> Self {
        let mut interval = tokio::time::interval(every.max(Duration::from_millis(1)));
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { interval }
    }
}

impl PollStrategy for TickPoll {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        // Consume every elapsed tick; the last call returns Pending and leaves the waker armed
        // for the next one, which is what keeps an idle worker polling.
        while self.interval.poll_tick(cx).is_ready() {}
        Poll::Pending
    }
}
