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
    /// A reader found the group missing or stale (`read.on_miss`).
    Read,
}

impl RefreshJob {
    pub fn new(group: GroupId, reason: Reason) -> Self {
        Self { group, reason }
    }
}

/// What a worker may find on the queue: a refresh job, or any other JSON value (a job of another
/// type or another version, a hand-written push). Decoding into this never fails on valid JSON,
/// so a malformed job reaches the handler — which sends it to the dead letter — instead of
/// failing the fetch and stopping the worker that fetched it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Incoming {
    Refresh(RefreshJob),
    Malformed(serde_json::Value),
}

impl Incoming {
    /// The refresh job, or a one-line description of why this is not one.
    pub fn into_job(self) -> Result<RefreshJob, String> {
        match self {
            Self::Refresh(job) => Ok(job),
            Self::Malformed(value) => {
                let mut shown = value.to_string();
                if shown.len() > 200 {
                    let cut = (0..=200).rev().find(|&i| shown.is_char_boundary(i)).unwrap_or(0);
                    shown.truncate(cut);
                    shown.push('…');
                }
                Err(format!("malformed refresh job {shown}: expected {{\"group\": <64-bit integer>}}"))
            }
        }
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

    #[test]
    fn any_json_decodes_as_incoming_and_only_refresh_jobs_are_jobs() {
        let decode = |raw: &str| serde_json::from_str::<Incoming>(raw).expect("valid JSON always decodes");
        assert_eq!(decode(r#"{"group":7,"reason":"dirty"}"#).into_job(), Ok(RefreshJob::new(7, Reason::Dirty)));
        for raw in [r#"{"group":"seven"}"#, r#"{"grp":7}"#, r#"{"group":7,"reason":"bogus"}"#, "[1,2]", "null", "7"] {
            let error = decode(raw).into_job().expect_err(raw);
            assert!(error.starts_with("malformed refresh job"), "{error}");
        }
    }

    #[test]
    fn a_huge_malformed_payload_is_cut_in_the_error() {
        let raw = format!(r#"{{"junk":"{}"}}"#, "é".repeat(500));
        let error = serde_json::from_str::<Incoming>(&raw).expect("json").into_job().expect_err("malformed");
        assert!(error.len() < 400, "{}", error.len());
    }
}
