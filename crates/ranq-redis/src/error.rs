//! Why Redis could not be used, worded for the operator who has to fix it, and whether the fix
//! is in the configuration (exit code 2) or in bringing a server back (exit code 1).

use std::time::Duration;

/// Longest wait for a connection to open; also the bound the errors name.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a subscription to be confirmed.
pub(crate) const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) const NOT_A_REDIS_URL: &str = "is not a Redis URL: use redis://host:6379/0 (rediss:// for TLS, \
     redis+sentinel://host1:26379,host2:26379/<master name> for Sentinel, redis+cluster://host1:6379,host2:6379 \
     for a cluster, redis+unix:///path for a socket)";

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
    #[error("Redis at {url} refused the credentials: {source} (check the user and password in REDIS_URL)")]
    Auth { url: String, source: redis::RedisError },
    #[error(
        "Redis at {url} refused a command to this user: {source} (grant it: the ACL line in docs/deploying.md \
         lists every command ranq needs)"
    )]
    NoPermission { url: String, source: redis::RedisError },
    #[error("cannot read {key} {path}: {source}")]
    TlsFile { key: &'static str, path: String, source: std::io::Error },
    #[error("Redis at {url} answers in plaintext, not TLS: use redis:// (or enable TLS on the server)")]
    PlaintextServer { url: String },
    #[error(
        "no answer from Redis at {url} within {CONNECT_TIMEOUT:?} (is the host reachable, and does the URL's \
         scheme match the server: rediss:// for TLS, redis:// for plaintext?)"
    )]
    ConnectTimeout { url: String },
    #[error(
        "no sentinel at {url} knows a master named {master:?} (check the name after the hosts: \
         redis+sentinel://host:26379/<master name>)"
    )]
    UnknownMaster { url: String, master: String },
    #[error(
        "no master found through the sentinels at {url}: {reason} (are the sentinels and the data nodes \
         running, and are their addresses right?)"
    )]
    NoMaster { url: String, reason: String },
    #[error(
        "no node of the Redis Cluster at {url} answered with its layout: {source} (are the nodes running, \
         and are their addresses right?)"
    )]
    NoCluster { url: String, source: redis::RedisError },
    #[error("redis: {0}")]
    Command(#[from] redis::RedisError),
    #[error("redis did not confirm the subscription to {channel} within {SUBSCRIBE_TIMEOUT:?}")]
    SubscribeTimeout { channel: String },
}

impl RedisError {
    /// Whether the mistake is in the configuration (exit code 2) rather than the service being
    /// away (exit code 1): a bad URL, a certificate that does not verify, a file not read, the
    /// wrong scheme, credentials the server refuses, a command the ACL user may not run, a master
    /// name no sentinel knows.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::BadUrl { .. }
                | Self::Tls { .. }
                | Self::Auth { .. }
                | Self::NoPermission { .. }
                | Self::TlsFile { .. }
                | Self::PlaintextServer { .. }
                | Self::UnknownMaster { .. }
        )
    }
}

/// Whether a connect failed because the server refused the URL's user or password, or wants one
/// the URL does not give.
pub(crate) fn refuses_credentials(error: &redis::RedisError) -> bool {
    let text = error.to_string();
    error.kind() == redis::ErrorKind::AuthenticationFailed
        || ["WRONGPASS", "NOAUTH", "without any password configured", "invalid password"]
            .iter()
            .any(|s| text.contains(s))
}
