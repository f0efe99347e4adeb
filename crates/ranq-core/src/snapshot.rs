//! The cached snapshot of one group's leaderboard: the JSON value stored at `<ns>:top:{<group>}`
//! (public: see `docs/reference/redis-layout.md`) and the only thing the read side ever needs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fence::Version;
use crate::ids::{GroupId, MemberId};

/// How many entries a snapshot keeps.
pub const TOP_N: usize = 100;

/// One ranked member. `rank` is 1-based in the ranking order of [`crate::ranking`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub rank: u32,
    pub member: MemberId,
    pub score: i64,
}

/// A group's top-N at one version.
///
/// Field order matters: `group` and `version` come first so the fenced write script can read the
/// stored version with a cheap prefix match instead of decoding 6 KB of JSON per write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub group: GroupId,
    pub version: Version,
    pub computed_at: DateTime<Utc>,
    pub entries: Vec<Entry>,
}

impl Snapshot {
    /// Builds a snapshot whose `computed_at` is the instant its version stands for.
    pub fn new(group: GroupId, version: Version, entries: Vec<Entry>) -> Self {
        Self { group, version, computed_at: crate::fence::version_time(version), entries }
    }

    /// Age of the snapshot at `now`, never negative (clocks of different hosts may disagree).
    pub fn age_at(&self, now: DateTime<Utc>) -> std::time::Duration {
        (now - self.computed_at).to_std().unwrap_or_default()
    }

    pub fn to_json(&self) -> String {
        // Serialising plain integers, strings and a timestamp cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_starts_with_group_and_version_for_the_fence_script() {
        let s = Snapshot::new(42, 1_732_500_000_123_456, vec![Entry { rank: 1, member: 7, score: 9 }]);
        let json = s.to_json();
        assert!(
            json.starts_with(r#"{"group":42,"version":1732500000123456,"computed_at":"2024-11-25T02:00:00.123456Z""#),
            "{json}"
        );
        let back: Snapshot = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back, s);
    }

    #[test]
    fn age_is_never_negative() {
        let s = Snapshot::new(1, 2_000_000, vec![]);
        assert_eq!(s.age_at(crate::fence::version_time(1_000_000)), std::time::Duration::ZERO);
        assert_eq!(s.age_at(crate::fence::version_time(5_000_000)), std::time::Duration::from_secs(3));
    }
}
