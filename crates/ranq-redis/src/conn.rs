//! The connection every owner of keys talks through: a multiplexed connection that reconnects by
//! itself (redis-rs's connection manager), and — for a Sentinel URL — moves to the new master
//! when the one it talks to stops being it. A write refused as `READONLY` (the old master,
//! demoted to a replica), a dropped connection or a refused one starts a search of the sentinels
//! in a task of its own, one at a time and at most every [`SEARCH_EVERY`]; the command that met
//! the error fails at once, as do those meeting errors while the search runs, and the callers'
//! own retries (the worker's, the next tick's) go to the new master once it is found.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use ranq_runtime::settings::RedisSettings;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::cluster::ClusterConn;
use crate::error::{CONNECT_TIMEOUT, RedisError, refuses_credentials};
use crate::sentinel::MasterFinder;
use crate::single_flight::SingleFlight;
use crate::tls::{answers_plaintext, client, is_tls_failure};

/// Longest wait for any one reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The least time between two searches for the master, so that a storm of failing commands asks
/// the sentinels a few times a second, not once per command.
const SEARCH_EVERY: Duration = Duration::from_millis(250);
/// The longest a search may take: the sentinels asked (twice, when they want credentials), the
/// servers they name asked for their role, and a connection opened to the master.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(20);

/// The server a connection talks to now.
#[derive(Clone)]
pub(crate) struct Current {
    pub manager: ConnectionManager,
    /// For pub/sub, which needs a connection of its own.
    pub client: redis::Client,
    /// Bumped by every move, so that an error met before a move starts no search after it.
    pub generation: u64,
    pub url: String,
}

struct Shared {
    current: RwLock<Current>,
    /// How to find the master again; `None` for a URL that names one server.
    finder: Option<MasterFinder>,
    tls: RedisSettings,
    /// The search for the master: one at a time, at most every [`SEARCH_EVERY`].
    search: Arc<SingleFlight>,
}

/// A connection to one Redis, or to whichever server Sentinel says is the master. Cheap to clone:
/// clones share it.
#[derive(Clone)]
pub(crate) struct ServerConn {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ServerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConn").field("url", &ranq_core::redact_url(&self.current().url)).finish()
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

/// Whether an error may mean the master moved: a write refused as `READONLY` (the master was
/// demoted), or the server gone (dropped, refused, silent) as a master that died would be.
fn points_elsewhere(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        || error.to_string().contains("READONLY")
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_io_error()
        || error.is_timeout()
}

impl ServerConn {
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
            Shared { current: RwLock::new(current), finder, tls: tls.clone(), search: SingleFlight::new(SEARCH_EVERY) };
        Self { shared: Arc::new(shared) }
    }

    pub(crate) fn current(&self) -> Current {
        self.shared.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether a search for the master is under way: the server this connection talks to may be
    /// gone, and a caller with something else to answer with need not wait for it.
    pub(crate) fn is_searching(&self) -> bool {
        self.shared.search.is_running()
    }

    /// After `error` met on the connection of `generation`: if it may mean the master moved,
    /// starts a search for it, unless one runs or the connection moved since.
    fn follow_master_after(&self, generation: u64, error: &redis::RedisError) {
        if self.shared.finder.is_none() || !points_elsewhere(error) || self.current().generation != generation {
            return;
        }
        let this = self.clone();
        self.shared.search.spawn(async move { this.search(generation).await });
    }

    /// Asks the sentinels where the master is, and moves there if it is not where this
    /// connection talks to; bounded by [`SEARCH_TIMEOUT`].
    async fn search(&self, generation: u64) {
        let Some(finder) = &self.shared.finder else { return };
        let current = self.current();
        if current.generation != generation {
            return;
        }
        let moved = async {
            let url = finder.locate().await?;
            if url == current.url {
                return Ok(None); // the same master: the manager reconnects to it by itself
            }
            let (manager, client) = open(&url, &self.shared.tls).await?;
            Ok::<_, RedisError>(Some(Current { manager, client, generation: generation + 1, url }))
        };
        match tokio::time::timeout(SEARCH_TIMEOUT, moved).await {
            Ok(Ok(Some(next))) => {
                tracing::warn!(from = %ranq_core::redact_url(&current.url), to = %ranq_core::redact_url(&next.url), "the Redis master moved; following it");
                *self.shared.current.write().unwrap_or_else(PoisonError::into_inner) = next;
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not find the Redis master; will ask again"),
            Err(_) => tracing::warn!("the sentinels did not name a master in time; will ask again"),
        }
    }
}

impl ConnectionLike for ServerConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut current = self.current();
            let result = current.manager.req_packed_command(cmd).await;
            if let Err(error) = &result {
                self.follow_master_after(current.generation, error);
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
                self.follow_master_after(current.generation, error);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.current().manager.get_db()
    }
}

/// The connection every owner of keys talks through: to one server (followed through Sentinel
/// when the URL says so), or to a whole Redis Cluster. Cheap to clone: clones share it.
#[derive(Clone, Debug)]
pub struct RedisConn(pub(crate) Kind);

#[derive(Clone)]
pub(crate) enum Kind {
    Server(ServerConn),
    Cluster(ClusterConn),
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Server(conn) => conn.fmt(f),
            Self::Cluster(conn) => f.debug_tuple("Cluster").field(&conn.shown()).finish(),
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Kind::Server(conn) => conn.req_packed_command(cmd),
            Kind::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Kind::Server(conn) => conn.req_packed_commands(pipeline, offset, count),
            Kind::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Kind::Server(conn) => conn.get_db(),
            Kind::Cluster(conn) => conn.get_db(),
        }
    }
}
