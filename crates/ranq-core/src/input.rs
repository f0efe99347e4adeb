//! The parsing of untrusted ids and limits, from a URL path, a query string or a command line.
//! Every entry point into ranq parses through here, so a bad id is rejected alike everywhere,
//! with the same message.

use crate::ids::{GroupId, MemberId};
use crate::snapshot::TOP_N;

/// Why an id or limit given by a user was rejected. The message is shown to users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("group id {0:?} is not a 64-bit integer")]
    Group(String),
    #[error("member id {0:?} is not a 64-bit integer")]
    Member(String),
    #[error("limit {0:?} is out of range: use an integer from 1 to {TOP_N}")]
    Limit(String),
}

/// Parses a group id from a path segment or a command-line argument.
pub fn parse_group_id(raw: &str) -> Result<GroupId, IdError> {
    raw.trim().parse::<GroupId>().map_err(|_| IdError::Group(raw.to_owned()))
}

/// Parses a member id from a path segment.
pub fn parse_member_id(raw: &str) -> Result<MemberId, IdError> {
    raw.trim().parse::<MemberId>().map_err(|_| IdError::Member(raw.to_owned()))
}

/// Parses a `limit` (1..=100); `None` means "all of the top 100".
pub fn parse_limit(raw: Option<&str>) -> Result<usize, IdError> {
    let Some(raw) = raw else { return Ok(TOP_N) };
    match raw.trim().parse::<usize>() {
        Ok(n) if (1..=TOP_N).contains(&n) => Ok(n),
        _ => Err(IdError::Limit(raw.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_are_64_bit_integers() {
        assert_eq!(parse_group_id("42"), Ok(42));
        assert_eq!(parse_group_id("-7"), Ok(-7));
        assert_eq!(parse_group_id("9223372036854775807"), Ok(i64::MAX));
        assert!(parse_group_id("9223372036854775808").is_err());
        assert!(parse_group_id("abc").is_err());
        assert!(parse_group_id("").is_err());
        assert!(parse_group_id("1.5").is_err());
        assert_eq!(parse_member_id(" 9 "), Ok(9));
        assert_eq!(parse_member_id("x"), Err(IdError::Member("x".into())));
    }

    #[test]
    fn limit_defaults_to_top_n_and_rejects_out_of_range() {
        assert_eq!(parse_limit(None), Ok(100));
        assert_eq!(parse_limit(Some("1")), Ok(1));
        assert_eq!(parse_limit(Some("100")), Ok(100));
        assert!(parse_limit(Some("0")).is_err());
        assert!(parse_limit(Some("101")).is_err());
        assert!(parse_limit(Some("-1")).is_err());
        assert!(parse_limit(Some("ten")).is_err());
    }
}
