//! The refresh job payload carried by the queue.
//!
//! It names only the group: the worker reads the current truth when it runs, so a job that runs
//! late or twice still writes correct data, and the version fence orders the writes.

use serde::{Deserialize, Serialize};

use crate::ids::GroupId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshJob {
    pub group: GroupId,
    /// Why the refresh was asked for; carried for logs and metrics only.
    #[serde(default)]
    pub reason: Reason,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A producer tick.
    #[default]
    Tick,
    /// `ranq refresh`.
    Manual,
    /// A mark in the dirty set.
    Dirty,
}

impl RefreshJob {
    pub fn new(group: GroupId, reason: Reason) -> Self {
        Self { group, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_small_json_and_reason_is_optional() {
        let job = RefreshJob::new(42, Reason::Manual);
        assert_eq!(serde_json::to_string(&job).expect("json"), r#"{"group":42,"reason":"manual"}"#);
        let bare: RefreshJob = serde_json::from_str(r#"{"group":7}"#).expect("json");
        assert_eq!(bare, RefreshJob::new(7, Reason::Tick));
    }
}
