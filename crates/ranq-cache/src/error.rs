//! Cache errors, worded for the operator who has to fix them.

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot reach Redis at {url}: {source} (is redis-server running, and is REDIS_URL right?)")]
    Connect { url: String, source: redis::RedisError },
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("snapshot at {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("cannot subscribe to snapshot changes (no Redis URL, or no answer within 5 s)")]
    NoSubscription,
}
