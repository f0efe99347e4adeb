//! `ranq-worker` turns refresh jobs into fenced snapshots, fast.
//!
//! apalis hands a worker one job at a time, but the database and Redis are fast only in batches.
//! So each job handler gives its group to an in-process [`Batcher`] and waits; the batcher flushes
//! at `batch_size` groups or after `batch_wait`, runs one SQL query and one Redis pipeline for the
//! whole batch, and answers every waiting handler, which then returns and lets apalis ack the job.
//!
//! Architecture Invariant: a job is acked only after its group's write has been applied (or
//! fenced); a crash before that leaves the job to be re-run, and the version fence makes the
//! re-run harmless.

mod batcher;
mod run;

pub use batcher::{BatchError, Batcher, BatcherOptions, MAX_BACKOFF, Refreshed, Refresher, RetryPolicy, Totals};
pub use run::run;
