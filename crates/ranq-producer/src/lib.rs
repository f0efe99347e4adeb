//! `ranq-producer` is the fleet's heartbeat: on every cron tick it enqueues one refresh job per
//! group (mode `all`), or per group in the dirty set plus a periodic full sweep (mode `dirty`).
//!
//! Ticks are driven by apalis-cron, which runs every tick on every producer instance; so each tick
//! is *claimed* in Redis under its scheduled time before anything is enqueued, and only the
//! instance that wins the claim enqueues it. Tick counters and the last tick live in Redis for
//! `ranq status`.
//!
//! Architecture Invariant: the producer never writes snapshots; it only enqueues jobs.

mod audit;
mod run;
mod tick;

pub use audit::{LastTick, TickCounters, read_last_tick, read_tick_counters};
pub use run::{parse_schedule, run};
pub use tick::{Producer, TickOutcome, tick_id};
