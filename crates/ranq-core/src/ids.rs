//! Group and member identifiers.
//!
//! Ids are 64-bit signed integers because that is what `BIGINT` is in both Postgres and SQLite;
//! accepting anything wider would let a request name a group the database cannot hold.

/// A group (leaderboard) id, `ranq_groups.id`.
pub type GroupId = i64;
/// A member id, `ranq_scores.member_id`.
pub type MemberId = i64;
