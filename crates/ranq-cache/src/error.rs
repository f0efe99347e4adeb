//! Cache errors, worded for the operator who has to fix them.

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Connection(#[from] ranq_redis::RedisError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("snapshot at {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
}
