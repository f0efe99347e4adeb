//! `ranq-redis` owns the connection to Redis: checking a `REDIS_URL`, connecting with bounded
//! waits and TLS, reconnecting by itself, following the master through Sentinel, talking to a
//! whole Redis Cluster, pub/sub, and the server's own figures.
//!
//! Every process opens one [`Redis`] and hands clones of it to the crates that own keys:
//! `ranq-cache` (snapshots, the dirty set, the quarantine, the producer's ledger) and
//! `ranq-queue` (the queue). They alone send commands through it ([`Redis::conn`]); everything
//! else asks them by name.
//!
//! Architecture Invariant: this is the only crate that turns a URL into a Redis connection, so
//! how ranq connects (TLS, Sentinel, Cluster) is decided here and nowhere else.

mod cluster;
mod conn;
mod error;
mod sentinel;
mod single_flight;
mod target;
mod tls;

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use ranq_runtime::settings::RedisSettings;

use crate::cluster::ClusterConn;
pub use crate::conn::RedisConn;
use crate::conn::{Kind, ServerConn};
pub use crate::error::RedisError;
use crate::error::SUBSCRIBE_TIMEOUT;
use crate::sentinel::MasterFinder;
use crate::target::Target;

/// How long [`answers`] waits for a PING.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `url` is a URL this crate can connect to, without connecting; if not, why, as the
/// end of a sentence that names the setting ("redis_url is not a Redis URL: use …").
pub fn check_url(url: &str) -> Result<(), &'static str> {
    Target::parse(url).map(drop)
}

/// Whether a Redis answers a PING at `url` (with the TLS settings `tls`) within two seconds.
pub async fn answers(url: &str, tls: &RedisSettings) -> bool {
    let ping = async {
        let redis = Redis::connect_with(url, tls).await.ok()?;
        redis.ping().await.ok()
    };
    matches!(tokio::time::timeout(PROBE_TIMEOUT, ping).await, Ok(Some(())))
}

/// One process's connection to Redis. Cheap to clone: clones share the connection, which
/// multiplexes their commands, reconnects by itself after a failure and, through Sentinel,
/// follows the master when it moves; on a cluster, each command goes to the node of its key.
#[derive(Clone)]
pub struct Redis {
    conn: RedisConn,
    /// The URL with its password replaced, for messages.
    shown: String,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("url", &self.shown).finish()
    }
}

impl Redis {
    /// Connects to `url` as [`Redis::connect_with`] does, with no TLS settings beyond the URL.
    pub async fn connect(url: &str) -> Result<Self, RedisError> {
        Self::connect_with(url, &RedisSettings::default()).await
    }

    /// Connects to `url`: one server (`redis://`, or `rediss://` for TLS, verified against the
    /// system's roots or `tls.tls_ca_file`), the master that the sentinels of a
    /// `redis+sentinel://` (`rediss+sentinel://`) URL name, or the cluster of a
    /// `redis+cluster://` (`rediss+cluster://`) URL's nodes. Every wait is bounded by the connect
    /// timeout (5 s), a few times over through Sentinel (the sentinels, asked at once, then the
    /// servers they name) or a cluster (its seeds, then its masters), and so is every later
    /// command: no call can hang on a dead server.
    pub async fn connect_with(url: &str, tls: &RedisSettings) -> Result<Self, RedisError> {
        let shown = ranq_core::redact_url(url);
        let kind = match Target::parse_for(url)? {
            Target::Direct(url) => Kind::Server(ServerConn::direct(&url, tls).await?),
            Target::Sentinel(target) => {
                let finder = MasterFinder { target, tls: tls.clone(), shown: shown.clone() };
                Kind::Server(ServerConn::through(finder, tls).await?)
            }
            Target::Cluster(target) => Kind::Cluster(ClusterConn::open(target, tls, shown.clone()).await?),
        };
        Ok(Self { conn: RedisConn(kind), shown })
    }

    /// Whether this connection skips verifying the server's certificate.
    pub fn is_insecure(url: &str, tls: &RedisSettings) -> bool {
        let tls_url = ["rediss://", "rediss+sentinel://", "rediss+cluster://"].iter().any(|s| url.starts_with(s));
        tls_url && (tls.tls_insecure || url.ends_with("#insecure"))
    }

    /// Whether this is a connection to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn.0, Kind::Cluster(_))
    }

    /// Whether the connection is looking for a new master (through Sentinel) after an error
    /// that suggested the old one is gone: a caller with something else to answer with need not
    /// wait for this one.
    pub fn is_finding_master(&self) -> bool {
        matches!(&self.conn.0, Kind::Server(conn) if conn.is_searching())
    }

    /// The URL, its password shown as `***`.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The connection, for the crates that own keys (`ranq-cache`, `ranq-queue`) and for the
    /// queue library they hand it to.
    pub fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    /// Round trip to the server (on a cluster, to any one node).
    pub async fn ping(&self) -> Result<(), RedisError> {
        if let Kind::Cluster(conn) = &self.conn.0 {
            return Ok(conn.ping().await?);
        }
        redis::cmd("PING").query_async::<String>(&mut self.conn()).await?;
        Ok(())
    }

    /// Publishes `message` on `channel`.
    pub async fn publish(&self, channel: &str, message: &str) -> Result<(), RedisError> {
        redis::cmd("PUBLISH").arg(channel).arg(message).query_async::<()>(&mut self.conn()).await?;
        Ok(())
    }

    /// A subscription to `channel` on a connection of its own to the current master (on a
    /// cluster, to the first master that answers: a message published on any node reaches
    /// every node), confirmed by the server.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, RedisError> {
        let client = match &self.conn.0 {
            Kind::Server(conn) => conn.current().client,
            Kind::Cluster(conn) => {
                let masters = conn.masters().await?;
                let mut last = None;
                for (host, port) in masters {
                    match Self::subscribe_with(conn.node_client(&host, port)?, channel).await {
                        Ok(subscription) => return Ok(subscription),
                        Err(e) => last = Some(e),
                    }
                }
                return Err(last.unwrap_or(RedisError::SubscribeTimeout { channel: channel.to_owned() }));
            }
        };
        Self::subscribe_with(client, channel).await
    }

    async fn subscribe_with(client: redis::Client, channel: &str) -> Result<Subscription, RedisError> {
        let subscribe = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, RedisError>(pubsub)
        };
        let pubsub = tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribe)
            .await
            .map_err(|_| RedisError::SubscribeTimeout { channel: channel.to_owned() })??;
        Ok(Subscription { messages: Box::pin(pubsub.into_on_message()) })
    }

    /// One section of `INFO` (`memory`, `stats`, `commandstats` …) as field → value; on a
    /// cluster, the numbers summed over its masters.
    pub async fn info(&self, section: &str) -> Result<HashMap<String, String>, RedisError> {
        if let Kind::Cluster(conn) = &self.conn.0 {
            return Ok(conn.info(section).await?);
        }
        let text: String = redis::cmd("INFO").arg(section).query_async(&mut self.conn()).await?;
        Ok(info_fields(&text).collect())
    }

    /// Deletes every key matching `pattern`, a page of `SCAN` at a time (on a cluster, on each
    /// master in turn), with `UNLINK`: the server frees the memory in the background. Returns
    /// how many keys were deleted.
    pub async fn unlink_matching(&self, pattern: &str) -> Result<u64, RedisError> {
        let mut conn = self.conn();
        let nodes = match &self.conn.0 {
            Kind::Server(_) => vec![None],
            Kind::Cluster(cluster) => cluster.masters().await?.into_iter().map(Some).collect(),
        };
        let mut deleted = 0u64;
        for node in nodes {
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1_000);
                let (next, keys): (u64, Vec<String>) = match (&node, &self.conn.0) {
                    (Some((host, port)), Kind::Cluster(cluster)) => {
                        redis::from_redis_value(cluster.on_node(host, *port, scan).await?)
                            .map_err(redis::RedisError::from)?
                    }
                    _ => scan.query_async(&mut conn).await?,
                };
                if !keys.is_empty() {
                    // On a cluster the client splits a multi-key UNLINK by slot.
                    deleted += redis::cmd("UNLINK").arg(&keys).query_async::<u64>(&mut conn).await?;
                }
                // A full SCAN ends when its cursor comes back to 0.
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(deleted)
    }
}

/// The `field:value` lines of an `INFO` reply.
pub(crate) fn info_fields(text: &str) -> impl Iterator<Item = (String, String)> + '_ {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.to_owned(), value.trim().to_owned()))
}

/// The messages of one pub/sub channel, as text.
pub struct Subscription {
    messages: Pin<Box<dyn Stream<Item = redis::Msg> + Send>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscription")
    }
}

impl Subscription {
    /// The next message's payload; `None` once the connection is gone.
    pub async fn next(&mut self) -> Option<String> {
        let message = self.messages.next().await?;
        Some(String::from_utf8_lossy(message.get_payload_bytes()).into_owned())
    }
}
