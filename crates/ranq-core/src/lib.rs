//! `ranq-core` is the vocabulary every other ranq crate speaks: group and member ids, the cached
//! snapshot, the ranking order, freshness from age, the version fence rule, Redis key names, the
//! refresh job payload and the producer's bookkeeping values.
//!
//! Architecture Invariant: this crate does no IO and depends on no runtime. Everything here is a
//! pure function or a plain value, so the rules that the whole fleet must agree on are tested once,
//! here, without Postgres or Redis.

pub mod fence;
pub mod fleet;
pub mod freshness;
pub mod health;
pub mod ids;
pub mod job;
pub mod keys;
pub mod ranking;
pub mod redact;
pub mod seed;
pub mod snapshot;

pub use fence::{Version, fence_accepts};
pub use fleet::{LastTick, LeaderInfo, TickCounters, Token};
pub use freshness::{Freshness, FreshnessPolicy};
pub use health::GroupHealth;
pub use ids::{GroupId, IdError, MemberId, parse_group_id, parse_limit};
pub use job::{Incoming, RefreshJob};
pub use keys::Keys;
pub use ranking::{RankedRow, rank_rows};
pub use redact::redact_url;
pub use snapshot::{Entry, Snapshot, TOP_N};
