//! `ranq-cache` owns ranq's own data in Redis: snapshot writes behind the version fence, snapshot
//! reads, the public dirty set, and the index that makes freshness counts cheap.
//!
//! Architecture Invariant: every write of a snapshot goes through the fence script, so no code
//! path can move a cached version backwards. The queue's keys are not here (see `ranq-queue`).

mod error;
mod health;
mod store;

pub use error::CacheError;
pub use health::{QuarantinePolicy, RecordedFailures};
pub use store::{AgePercentiles, AgedGroup, Cache, FreshnessCounts, Outcome, Write, stored_version};

/// Opens a Redis connection manager (reconnects by itself) with bounded waits, so no call can
/// hang forever on a dead server.
pub async fn connect(url: &str) -> Result<redis::aio::ConnectionManager, CacheError> {
    let unreachable = |source| CacheError::Connect { url: ranq_core::redact_url(url), source };
    let client = redis::Client::open(url).map_err(unreachable)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
        .set_response_timeout(Some(std::time::Duration::from_secs(10)))
        .set_number_of_retries(3);
    client.get_connection_manager_with_config(config).await.map_err(unreachable)
}
