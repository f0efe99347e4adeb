//! The stored values as text: what the cache writes and how it reads them back.

use ranq_core::{GroupHealth, GroupId, Version};

/// Reads the version from a stored snapshot's JSON prefix without decoding the entries.
pub fn stored_version(json: &str) -> Option<Version> {
    let rest = &json[json.find(r#""version":"#)? + 10..];
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A group's failure record; an unreadable one is logged and ignored.
pub(crate) fn decode_health(group: GroupId, json: &str) -> Option<GroupHealth> {
    serde_json::from_str(json)
        .inspect_err(|e| tracing::warn!(group, error = %e, "unreadable failure record ignored"))
        .ok()
}

/// Groups as a `written` channel message: `1,2,3`.
pub(crate) fn join_groups(groups: &[GroupId]) -> String {
    groups.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_json_prefix() {
        let s = ranq_core::Snapshot::new(4, 1_732_500_000_123_456, vec![]);
        assert_eq!(stored_version(&s.to_json()), Some(1_732_500_000_123_456));
        assert_eq!(stored_version("garbage"), None);
        assert_eq!(join_groups(&[1, 2, 3]), "1,2,3");
    }
}
