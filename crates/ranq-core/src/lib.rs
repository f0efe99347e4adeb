//! `ranq-core` is the vocabulary every other ranq crate speaks: group and member ids, the cached
//! snapshot, the ranking order, freshness from age, the version fence rule, Redis key names, the
//! refresh job payload, the producer's ledger values, and the parsing of untrusted input.
//!
//! Architecture Invariant: this crate does no IO and depends on no runtime. Everything here is a
//! pure function or a plain value, so the rules that the whole fleet must agree on are tested once,
//! here, without Postgres or Redis.

pub mod fence;
pub mod freshness;
pub mod health;
pub mod ids;
pub mod input;
pub mod job;
pub mod keys;
pub mod ledger;
pub mod metrics;
pub mod ranking;
pub mod redact;
pub mod seed;
pub mod snapshot;

pub use fence::{Version, fence_accepts};
pub use freshness::{Freshness, FreshnessPolicy};
pub use health::GroupHealth;
pub use ids::{GroupId, MemberId};
pub use input::{IdError, parse_group_id, parse_limit, parse_member_id};
pub use job::{Incoming, Reason, RefreshJob};
pub use keys::Keys;
pub use ledger::{LastTick, LeaderInfo, LeaseState, LeaseValue, TickClaim, TickCounters, Token};
pub use ranking::{RankedRow, rank_rows};
pub use redact::redact_url;
pub use snapshot::{Entry, Snapshot, TOP_N};
