//! `ranq-producer` is the fleet's heartbeat: on every cron tick it enqueues one refresh job per
//! group (mode `all`), or per group in the dirty set plus a periodic full sweep (mode `dirty`).
//!
//! Any number of producers run; one holds the leader lease (see [`lease`]) and the others stand
//! by. Ticks are driven by apalis-cron on every instance, so the leader also *claims* each tick in
//! Redis under its scheduled time, fenced by its lease token, before enqueueing it: a tick is
//! enqueued at most once even while leadership changes hands. Tick counters (enqueued, duplicates
//! skipped, missed while no one led) and the last tick live in the ledger (`ranq_cache::Ledger`),
//! which `ranq status` reads.
//!
//! Architecture Invariant: the producer never writes snapshots; it only enqueues jobs.

mod lease;
mod run;
mod tick;

pub use lease::Lease;
pub use ranq_core::LeaseState;
pub use run::{parse_schedule, run};
pub use tick::{Producer, TickOutcome, tick_id};
