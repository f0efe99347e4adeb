//! A group's refresh health: how many times in a row its refresh failed, why, and whether it is
//! quarantined. Written by workers, shown by the read API and `ranq status`.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// The stored record (`<ns>:{quarantine}:failures`), exactly as the worker's script writes it;
/// times are milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupHealth {
    /// Consecutive failed refreshes; a successful refresh removes the record.
    pub failures: u32,
    /// The last failure, one line.
    pub error: String,
    /// First failure of this run.
    pub since_ms: i64,
    /// Last failure.
    pub last_ms: i64,
    /// Failed `quarantine_after` times or more: retried only at `retry_at_ms`.
    #[serde(default)]
    pub quarantined: bool,
    #[serde(default)]
    pub retry_at_ms: Option<i64>,
}

impl GroupHealth {
    pub fn since(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.since_ms).single().unwrap_or_default()
    }

    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        self.retry_at_ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_lua_script_writes() {
        // cjson writes integers as plain numbers and omits nil fields.
        let raw = r#"{"failures":3,"error":"division by zero","since_ms":1764000000000,"last_ms":1764000120000,"quarantined":true,"retry_at_ms":1764000720000}"#;
        let h: GroupHealth = serde_json::from_str(raw).expect("decodes");
        assert!(h.quarantined);
        assert_eq!(h.retry_at().map(|t| t.timestamp()), Some(1_764_000_720));
        let early: GroupHealth =
            serde_json::from_str(r#"{"failures":1,"error":"x","since_ms":1,"last_ms":1}"#).expect("decodes");
        assert!(!early.quarantined && early.retry_at_ms.is_none());
    }
}
