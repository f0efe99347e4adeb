//! The version fence: the rule that makes late and duplicate refreshes harmless.
//!
//! A version is the instant (microseconds since the Unix epoch) at which the source data was read,
//! taken from the database's clock where it has one, so that refreshes on different hosts are
//! ordered by when they read, not by when their host thinks it is. A write is accepted only if its
//! version is strictly greater than the stored one; the Redis script in `ranq-cache` applies
//! exactly this rule atomically.

use chrono::{DateTime, Utc};

/// Microseconds since the Unix epoch at which the source was read.
pub type Version = i64;

/// The fence decision: may a snapshot of version `incoming` replace what is stored?
pub fn fence_accepts(stored: Option<Version>, incoming: Version) -> bool {
    stored.is_none_or(|stored| incoming > stored)
}

/// The instant a version stands for.
pub fn version_time(version: Version) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(version).unwrap_or_default()
}

/// The version of an instant (used where the source has no clock of its own, e.g. SQLite).
pub fn version_of(at: DateTime<Utc>) -> Version {
    at.timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_strictly_newer_versions_pass_the_fence() {
        assert!(fence_accepts(None, 1));
        assert!(fence_accepts(Some(1), 2));
        assert!(!fence_accepts(Some(2), 2), "a duplicate refresh is dropped");
        assert!(!fence_accepts(Some(3), 2), "a late refresh is dropped");
    }

    #[test]
    fn versions_and_instants_round_trip() {
        let v = 1_732_500_000_123_456;
        assert_eq!(version_of(version_time(v)), v);
    }
}
