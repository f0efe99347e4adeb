//! `ranq-cache` owns ranq's own data in Redis and every command sent to it: snapshot writes
//! behind the version fence and snapshot reads, the index that makes freshness counts cheap, the
//! public dirty set, each group's failure record and quarantine, and the producer's ledger (the
//! leader lease, tick claims and counters). The queue's keys are `ranq-queue`'s.
//!
//! Architecture Invariant: every write of a snapshot goes through the fence script, so no code
//! path can move a cached version backwards.
//!
//! Architecture Invariant: no other crate sends a command to these keys; they ask [`Cache`] or
//! [`Ledger`] by name.

mod cache;
mod codec;
mod dirty;
mod error;
mod index;
mod ledger;
mod quarantine;
mod snapshots;

pub use cache::Cache;
pub use codec::stored_version;
pub use error::CacheError;
pub use index::{AgePercentiles, AgedGroup, FreshnessCounts, OldestGroups};
pub use ledger::Ledger;
pub use quarantine::{GroupFailure, Quarantine, QuarantinePolicy, RecordedFailures};
pub use ranq_redis::{Redis, Subscription};
pub use snapshots::{Cached, Outcome, Stored, Write};
