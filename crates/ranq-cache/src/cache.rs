//! The handle: one namespace of one Redis. The commands it sends live in the modules beside this
//! one, each on the keys it names.

use ranq_core::Keys;
use ranq_redis::{Redis, Subscription};

use crate::CacheError;
use crate::ledger::Ledger;

/// Handle to ranq's data in one Redis namespace. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    pub(crate) redis: Redis,
    pub(crate) keys: Keys,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("redis", &self.redis).field("namespace", &self.keys.namespace()).finish()
    }
}

impl Cache {
    pub fn new(redis: Redis, keys: Keys) -> Self {
        Self { redis, keys }
    }

    /// Connects to `url` and serves `namespace`.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, CacheError> {
        Ok(Self::new(Redis::connect(url).await?, Keys::new(namespace)))
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The connection this cache talks through, to share with the queue of the same Redis.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// The producer's ledger in the same namespace.
    pub fn ledger(&self) -> Ledger {
        Ledger::new(self.redis.clone(), self.keys.clone())
    }

    pub async fn ping(&self) -> Result<(), CacheError> {
        Ok(self.redis.ping().await?)
    }

    /// A subscription to [`Keys::written_channel`]: each message names groups whose snapshot
    /// may have changed (comma-separated), or is a subscriber's heartbeat.
    pub async fn subscribe_written(&self) -> Result<Subscription, CacheError> {
        Ok(self.redis.subscribe(&self.keys.written_channel()).await?)
    }

    /// Publishes `message` on [`Keys::written_channel`] (subscribers' own heartbeats).
    pub async fn publish_written(&self, message: &str) -> Result<(), CacheError> {
        Ok(self.redis.publish(&self.keys.written_channel(), message).await?)
    }

    pub(crate) fn conn(&self) -> ranq_redis::RedisConn {
        self.redis.conn()
    }
}
