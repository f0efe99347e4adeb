//! Freshness from age: the FRESH / STALE / MISS rule, shared by the HTTP API,
//! `ranq get` and `ranq status` so they can never disagree.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Freshness {
    /// Cached and no older than `stale_after`.
    Fresh,
    /// Cached, older than `stale_after`, no older than `max_age`: served, but flagged.
    Stale,
    /// Not cached, or older than `max_age`: not served.
    Miss,
}

impl Freshness {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fresh => "FRESH",
            Self::Stale => "STALE",
            Self::Miss => "MISS",
        }
    }
}

impl std::fmt::Display for Freshness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two ages that split FRESH from STALE and STALE from MISS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshnessPolicy {
    pub stale_after: Duration,
    pub max_age: Duration,
}

impl FreshnessPolicy {
    /// Classifies a cached snapshot by its age. Boundaries are inclusive: exactly `stale_after`
    /// old is still FRESH, exactly `max_age` old is still served.
    pub fn classify(&self, age: Duration) -> Freshness {
        if age <= self.stale_after {
            Freshness::Fresh
        } else if age <= self.max_age {
            Freshness::Stale
        } else {
            Freshness::Miss
        }
    }

    /// How long a response may be cached by an HTTP client: until the snapshot turns STALE.
    pub fn fresh_for(&self, age: Duration) -> Duration {
        self.stale_after.saturating_sub(age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> FreshnessPolicy {
        FreshnessPolicy { stale_after: Duration::from_secs(2), max_age: Duration::from_secs(5) }
    }

    #[test]
    fn status_follows_age_with_inclusive_boundaries() {
        let p = policy();
        assert_eq!(p.classify(Duration::ZERO), Freshness::Fresh);
        assert_eq!(p.classify(Duration::from_secs(2)), Freshness::Fresh);
        assert_eq!(p.classify(Duration::from_millis(2001)), Freshness::Stale);
        assert_eq!(p.classify(Duration::from_secs(5)), Freshness::Stale);
        assert_eq!(p.classify(Duration::from_millis(5001)), Freshness::Miss);
    }

    #[test]
    fn clients_may_cache_until_stale() {
        let p = policy();
        assert_eq!(p.fresh_for(Duration::from_millis(500)), Duration::from_millis(1500));
        assert_eq!(p.fresh_for(Duration::from_secs(3)), Duration::ZERO);
    }

    #[test]
    fn statuses_serialise_in_upper_case() {
        assert_eq!(serde_json::to_string(&Freshness::Stale).expect("json"), r#""STALE""#);
        assert_eq!(Freshness::Miss.to_string(), "MISS");
    }
}
