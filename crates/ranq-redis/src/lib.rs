//! `ranq-redis` owns the connection to Redis: checking a `REDIS_URL`, connecting with bounded
//! waits, reconnecting by itself, pub/sub, and the server's own figures.
//!
//! Every process opens one [`Redis`] and hands clones of it to the crates that own keys:
//! `ranq-cache` (snapshots, the dirty set, the quarantine, the producer's ledger) and
//! `ranq-queue` (the queue). They alone send commands through it; everything else asks them by
//! name.
//!
//! Architecture Invariant: this is the only crate that turns a URL into a Redis connection, so
//! how ranq connects (TLS, Sentinel, Cluster) is decided here and nowhere else.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use ranq_runtime::settings::RedisSettings;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Longest wait for a connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for any one reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a subscription to be confirmed.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`answers`] waits for a PING.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why Redis could not be used, worded for the operator who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("{url} {NOT_A_REDIS_URL}")]
    BadUrl { url: String },
    #[error(
        "cannot reach Redis at {url}: {source} (is redis-server running, is REDIS_URL right, and does its \
         scheme match the server: rediss:// for TLS, redis:// for plaintext?)"
    )]
    Connect { url: String, source: redis::RedisError },
    #[error(
        "TLS to Redis at {url} failed: {source} (check redis.tls_ca_file, or the system's roots, against the \
         server's certificate, and that the server speaks TLS on this port)"
    )]
    Tls { url: String, source: redis::RedisError },
    #[error("cannot read {key} {path}: {source}")]
    TlsFile { key: &'static str, path: String, source: std::io::Error },
    #[error("Redis at {url} answers in plaintext, not TLS: use redis:// (or enable TLS on the server)")]
    PlaintextServer { url: String },
    #[error(
        "no answer from Redis at {url} within {CONNECT_TIMEOUT:?} (is the host reachable, and does the URL's \
         scheme match the server: rediss:// for TLS, redis:// for plaintext?)"
    )]
    ConnectTimeout { url: String },
    #[error("redis: {0}")]
    Command(#[from] redis::RedisError),
    #[error("redis did not confirm the subscription to {channel} within {SUBSCRIBE_TIMEOUT:?}")]
    SubscribeTimeout { channel: String },
}

const NOT_A_REDIS_URL: &str =
    "is not a Redis URL: use redis://host:6379/0 (or rediss:// for TLS, redis+unix:///path for a socket)";

/// Whether `url` is a URL this crate can connect to, without connecting; if not, why, as the
/// end of a sentence that names the setting ("redis_url is not a Redis URL: use …").
pub fn check_url(url: &str) -> Result<(), &'static str> {
    redis::Client::open(url).map(drop).map_err(|_| NOT_A_REDIS_URL)
}

/// Whether a Redis answers a PING at `url` (with the TLS settings `tls`) within two seconds.
pub async fn answers(url: &str, tls: &RedisSettings) -> bool {
    let Ok(client) = client(url, tls) else { return false };
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING").query_async::<String>(&mut conn).await.ok()
    };
    matches!(tokio::time::timeout(PROBE_TIMEOUT, ping).await, Ok(Some(_)))
}

/// One process's connection to Redis. Cheap to clone: clones share the connection, which
/// multiplexes their commands and reconnects by itself after a failure.
#[derive(Clone)]
pub struct Redis {
    manager: ConnectionManager,
    /// For pub/sub, which needs a connection of its own.
    client: redis::Client,
    /// The URL with its password replaced, for messages.
    shown: String,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("url", &self.shown).finish()
    }
}

impl RedisError {
    /// Whether the mistake is in the configuration (exit code 2) rather than the service being
    /// away (exit code 1): a bad URL, a certificate that does not verify, a file not read.
    pub fn is_configuration(&self) -> bool {
        matches!(self, Self::BadUrl { .. } | Self::Tls { .. } | Self::TlsFile { .. } | Self::PlaintextServer { .. })
    }
}

/// Whether a failed connect failed in the TLS handshake (a certificate that does not verify, a
/// TLS client answered in plaintext) rather than for want of a server. rustls's errors reach
/// here as IO errors, told apart by their text.
fn is_tls_failure(error: &redis::RedisError) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    ["certificate", "tls", "handshake", "corrupt message", "invalid message", "unknownissuer"]
        .iter()
        .any(|sign| text.contains(sign))
}

/// Whether the TLS address `addr` is a plaintext Redis after all: a TLS client's hello is no
/// command to it, so it waits for more and the handshake never ends. A plaintext PING tells.
async fn answers_plaintext(addr: &redis::ConnectionAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis::ConnectionAddr::TcpTls { host, port, .. } = addr else { return false };
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.ok()?;
        Some(&reply == b"+PONG\r\n" || reply.starts_with(b"-NOAUTH"))
    };
    matches!(tokio::time::timeout(PROBE_TIMEOUT, probe).await, Ok(Some(true)))
}

fn read(key: &'static str, path: &std::path::Path) -> Result<Vec<u8>, RedisError> {
    std::fs::read(path).map_err(|source| RedisError::TlsFile { key, path: path.display().to_string(), source })
}

/// The client for `url` under `tls`: the system's roots, or the CA file, and a client
/// certificate for mutual TLS. `tls_insecure` is redis-rs's `#insecure`.
fn client(url: &str, tls: &RedisSettings) -> Result<redis::Client, RedisError> {
    let shown = ranq_core::redact_url(url);
    let url = if tls.tls_insecure && url.starts_with("rediss://") && !url.ends_with("#insecure") {
        format!("{url}#insecure")
    } else {
        url.to_owned()
    };
    let bad_url = |_| RedisError::BadUrl { url: shown.clone() };
    if tls.tls_ca_file.is_none() && tls.tls_cert_file.is_none() {
        return redis::Client::open(url.as_str()).map_err(bad_url);
    }
    let root_cert = tls.tls_ca_file.as_deref().map(|p| read("redis.tls_ca_file", p)).transpose()?;
    let client_tls = match (&tls.tls_cert_file, &tls.tls_key_file) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read("redis.tls_cert_file", cert)?,
            client_key: read("redis.tls_key_file", key)?,
        }),
        _ => None,
    };
    redis::Client::build_with_tls(url.as_str(), redis::TlsCertificates { client_tls, root_cert }).map_err(bad_url)
}

impl Redis {
    /// Connects to `url` as [`Redis::connect_with`] does, with no TLS settings beyond the URL.
    pub async fn connect(url: &str) -> Result<Self, RedisError> {
        Self::connect_with(url, &RedisSettings::default()).await
    }

    /// Connects to `url` (`redis://`, or `rediss://` for TLS, verified against the system's roots
    /// or `tls.tls_ca_file`), waiting at most a few seconds; every later command is bounded too,
    /// so no call can hang on a dead server.
    pub async fn connect_with(url: &str, tls: &RedisSettings) -> Result<Self, RedisError> {
        let shown = ranq_core::redact_url(url);
        let client = client(url, tls)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(3);
        // The manager retries a failed first connect by itself; the whole of it is bounded here,
        // so that a handshake nobody answers ends as an error, not a wait.
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, client.get_connection_manager_with_config(config)).await;
        let manager = match connected {
            Ok(Ok(manager)) => manager,
            Ok(Err(source)) if is_tls_failure(&source) => return Err(RedisError::Tls { url: shown, source }),
            Ok(Err(source)) => return Err(RedisError::Connect { url: shown, source }),
            Err(_) if answers_plaintext(client.get_connection_info().addr()).await => {
                return Err(RedisError::PlaintextServer { url: shown });
            }
            Err(_) => return Err(RedisError::ConnectTimeout { url: shown }),
        };
        Ok(Self { manager, client, shown })
    }

    /// Whether this connection skips verifying the server's certificate.
    pub fn is_insecure(url: &str, tls: &RedisSettings) -> bool {
        url.starts_with("rediss://") && (tls.tls_insecure || url.ends_with("#insecure"))
    }

    /// The URL, its password shown as `***`.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The multiplexed connection, for the crates that own keys (`ranq-cache`, `ranq-queue`)
    /// and for the queue library they hand it to.
    pub fn manager(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// Round trip to the server.
    pub async fn ping(&self) -> Result<(), RedisError> {
        redis::cmd("PING").query_async::<String>(&mut self.manager()).await?;
        Ok(())
    }

    /// Publishes `message` on `channel`.
    pub async fn publish(&self, channel: &str, message: &str) -> Result<(), RedisError> {
        redis::cmd("PUBLISH").arg(channel).arg(message).query_async::<()>(&mut self.manager()).await?;
        Ok(())
    }

    /// A subscription to `channel` on a connection of its own, confirmed by the server.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, RedisError> {
        let subscribe = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, RedisError>(pubsub)
        };
        let pubsub = tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribe)
            .await
            .map_err(|_| RedisError::SubscribeTimeout { channel: channel.to_owned() })??;
        Ok(Subscription { messages: Box::pin(pubsub.into_on_message()) })
    }

    /// One section of `INFO` (`memory`, `stats`, `commandstats` …) as field → value.
    pub async fn info(&self, section: &str) -> Result<HashMap<String, String>, RedisError> {
        let text: String = redis::cmd("INFO").arg(section).query_async(&mut self.manager()).await?;
        Ok(text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key.to_owned(), value.trim().to_owned()))
            .collect())
    }

    /// Deletes every key matching `pattern`, a page of `SCAN` at a time (`UNLINK`: the server
    /// frees the memory in the background). Returns how many keys were deleted.
    pub async fn unlink_matching(&self, pattern: &str) -> Result<u64, RedisError> {
        let mut conn = self.manager();
        let (mut cursor, mut deleted) = (0u64, 0u64);
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                deleted += redis::cmd("UNLINK").arg(&keys).query_async::<u64>(&mut conn).await?;
            }
            // A full SCAN ends when its cursor comes back to 0.
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
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
