//! The connection every owner of keys talks through: a multiplexed connection that reconnects by
//! itself (redis-rs's connection manager), and — for a Sentinel URL — moves to the new master
//! when the one it talks to stops being it. A write refused as `READONLY` (the old master,
//! demoted to a replica), a dropped connection or a refused one makes it ask the sentinels
//! again; the command that met the error fails, and the caller's own retry (the worker's, the
//! next tick's) goes to the new master.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ranq_runtime::settings::RedisSettings;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::error::{CONNECT_TIMEOUT, RedisError, refuses_credentials};
use crate::sentinel::MasterFinder;
use crate::tls::{answers_plaintext, client, is_tls_failure};

/// Longest wait for any one reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server a connection talks to now.
#[derive(Clone)]
pub(crate) struct Current {
    pub manager: ConnectionManager,
    /// For pub/sub, which needs a connection of its own.
    pub client: redis::Client,
    /// Bumped by every move, so that concurrent errors move once.
    pub generation: u64,
    pub url: String,
}

struct Shared {
    current: RwLock<Current>,
    /// How to find the master again; `None` for a URL that names one server.
    finder: Option<MasterFinder>,
    tls: RedisSettings,
    moving: tokio::sync::Mutex<()>,
}

/// A connection to one Redis, or to whichever server Sentinel says is the master. Cheap to clone:
/// clones share it.
#[derive(Clone)]
pub struct RedisConn {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn").field("url", &ranq_core::redact_url(&self.current().url)).finish()
    }
}

/// A connection manager to the single server at `url`, its first connect bounded by the
/// connect timeout whatever the manager's own retries would do, its failure diagnosed.
pub(crate) async fn open(url: &str, tls: &RedisSettings) -> Result<(ConnectionManager, redis::Client), RedisError> {
    let shown = ranq_core::redact_url(url);
    let client = client(url, tls)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(3);
    match tokio::time::timeout(CONNECT_TIMEOUT, client.get_connection_manager_with_config(config)).await {
        Ok(Ok(manager)) => Ok((manager, client)),
        Ok(Err(source)) if is_tls_failure(&source) => Err(RedisError::Tls { url: shown, source }),
        Ok(Err(source)) if refuses_credentials(&source) => Err(RedisError::Auth { url: shown, source }),
        Ok(Err(source)) => Err(RedisError::Connect { url: shown, source }),
        Err(_) if answers_plaintext(client.get_connection_info().addr()).await => {
            Err(RedisError::PlaintextServer { url: shown })
        }
        Err(_) => Err(RedisError::ConnectTimeout { url: shown }),
    }
}

/// Whether an error says the server is not (or no longer) the master this connection wants.
fn points_elsewhere(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        || error.to_string().contains("READONLY")
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_io_error()
        || error.is_timeout()
}

impl RedisConn {
    pub(crate) async fn direct(url: &str, tls: &RedisSettings) -> Result<Self, RedisError> {
        let (manager, client) = open(url, tls).await?;
        Ok(Self::new(Current { manager, client, generation: 0, url: url.to_owned() }, None, tls))
    }

    pub(crate) async fn through(finder: MasterFinder, tls: &RedisSettings) -> Result<Self, RedisError> {
        let url = finder.locate().await?;
        let (manager, client) = open(&url, tls).await?;
        Ok(Self::new(Current { manager, client, generation: 0, url }, Some(finder), tls))
    }

    fn new(current: Current, finder: Option<MasterFinder>, tls: &RedisSettings) -> Self {
        let shared =
            Shared { current: RwLock::new(current), finder, tls: tls.clone(), moving: tokio::sync::Mutex::new(()) };
        Self { shared: Arc::new(shared) }
    }

    pub(crate) fn current(&self) -> Current {
        self.shared.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// After `error` met on the connection of `generation`: if it may mean the master moved, ask
    /// the sentinels, and move if it did. Once per move, however many commands met the error.
    async fn after(&self, generation: u64, error: &redis::RedisError) {
        let Some(finder) = &self.shared.finder else { return };
        if !points_elsewhere(error) {
            return;
        }
        let _one_at_a_time = self.shared.moving.lock().await;
        let current = self.current();
        if current.generation != generation {
            return; // another command moved it already
        }
        let moved = async {
            let url = finder.locate().await?;
            if url == current.url {
                return Ok(None); // the same master: the manager reconnects to it by itself
            }
            let (manager, client) = open(&url, &self.shared.tls).await?;
            Ok::<_, RedisError>(Some(Current { manager, client, generation: generation + 1, url }))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT * 2, moved).await {
            Ok(Ok(Some(next))) => {
                tracing::warn!(from = %ranq_core::redact_url(&current.url), to = %ranq_core::redact_url(&next.url), "the Redis master moved; following it");
                *self.shared.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = next;
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not find the Redis master; will ask again"),
            Err(_) => tracing::warn!("the sentinels did not name a master in time; will ask again"),
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut current = self.current();
            let result = current.manager.req_packed_command(cmd).await;
            if let Err(error) = &result {
                self.after(current.generation, error).await;
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut current = self.current();
            let result = current.manager.req_packed_commands(pipeline, offset, count).await;
            if let Err(error) = &result {
                self.after(current.generation, error).await;
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.current().manager.get_db()
    }
}
