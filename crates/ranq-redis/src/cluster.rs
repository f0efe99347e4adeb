//! Redis Cluster: redis-rs's cluster client, which follows the cluster's layout by itself
//! (`MOVED` and `ASK` redirections, a new layout after a failover promotes a replica), and what
//! it does not do for ranq.
//!
//! - **A pipeline over many slots.** The cache writes a batch of groups, each in its own slot by
//!   its `{group}` tag, in one pipeline; the cluster client refuses a pipeline whose keys are in
//!   different slots. Here it becomes one pipeline per slot, all sent at once over the client's
//!   multiplexed node connections, so a batch still costs about one round trip to each node.
//!   Commands that name no key (`PUBLISH`) run after the others: a read process told of a write
//!   finds it written, as it would on one server.
//! - **Commands for every master**: `INFO` summed over them, `SCAN` on each in turn.
//! - **Pub/sub**: a classic `PUBLISH` reaches every node of a cluster, so a subscription is a
//!   connection of its own to any one master that answers.
//! - **A client that stops answering.** redis-rs repairs a lost node connection in the background
//!   and rereads the layout on `MOVED`; but when a master dies or hands over its slots, a client
//!   caught between the two can stop answering altogether, every command waiting out its timeout
//!   long after the cluster has settled. So a watchdog pings two masters through the client every
//!   [`PROBE_EVERY`]; when neither answers within [`PROBE_TIMEOUT`] — one slow node is not a
//!   wedged client — the client is rebuilt from the seeds and the nodes of the cluster's last
//!   layout: one rebuild at a time, at most every [`REBUILD_EVERY`]. The commands still waiting on
//!   the old client then fail at once, and the callers' retries go to the new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use futures::future::join_all;
use ranq_runtime::settings::RedisSettings;
use redis::aio::ConnectionLike;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::{Arg, Cmd, Pipeline, RedisFuture, Value};

use crate::error::{CONNECT_TIMEOUT, RedisError, refuses_credentials};
use crate::single_flight::SingleFlight;
use crate::target::ClusterTarget;
use crate::tls::{certificates, is_tls_failure};

/// Longest wait for any one reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest the first connect may take: the seeds asked in turn for the layout, then a
/// connection opened to each master.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// The least time between two rebuilds of the client: the commands that time out together after
/// a wedge start one rebuild, not one each.
const REBUILD_EVERY: Duration = Duration::from_secs(5);
/// How often the watchdog pings the cluster through the client.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Every how many probes the watchdog also rereads the layout, so that a rebuild tries the nodes
/// of the cluster as it is, not as it was when the process started.
const RELEARN_EVERY: u64 = 30;
/// How long the watchdog's ping may wait before the client counts as wedged: far above a loaded
/// node's answer, far below a command's timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The client commands go through now.
#[derive(Clone)]
struct Current {
    conn: ClusterConnection,
    /// Bumped by every rebuild, so that a wedge seen on a client already replaced starts no
    /// second rebuild.
    generation: u64,
}

struct Shared {
    current: RwLock<Current>,
    target: ClusterTarget,
    tls: RedisSettings,
    /// The URL with its password replaced, for messages.
    shown: String,
    /// The nodes of the cluster's last layout, `(host, port, whether a master)`: the watchdog
    /// pings its masters, and a rebuild tries them all after the seeds, which in a long-lived
    /// process may all be gone.
    known: Mutex<Vec<(String, u16, bool)>>,
    /// The rebuild of the client: one at a time, at most every [`REBUILD_EVERY`].
    rebuild: Arc<SingleFlight>,
    /// The generation of the current client, for the commands still waiting on an older one: they
    /// fail as soon as it is replaced, not when their timeout ends.
    rebuilt: tokio::sync::watch::Sender<u64>,
}

/// A connection to a whole Redis Cluster. Cheap to clone: clones share the node connections.
#[derive(Clone)]
pub(crate) struct ClusterConn {
    shared: Arc<Shared>,
}

/// A cluster client that first reached the cluster through `nodes`, with TLS as `target` and
/// `tls` ask; `shown` names the cluster in errors.
async fn connect(
    target: &ClusterTarget,
    nodes: &[(String, u16)],
    tls: &RedisSettings,
    shown: &str,
) -> Result<ClusterConnection, RedisError> {
    let shown = shown.to_owned();
    let bad_url = |_| RedisError::BadUrl { url: shown.clone() };
    let urls: Vec<String> = nodes.iter().map(|(host, port)| target.node_url(host, *port)).collect();
    let mut builder =
        ClusterClientBuilder::new(urls).connection_timeout(CONNECT_TIMEOUT).response_timeout(RESPONSE_TIMEOUT);
    if target.tls {
        if let Some(certs) = certificates(tls)? {
            builder = builder.certs(certs);
        }
        if tls.tls_insecure || target.insecure {
            builder = builder.tls(redis::TlsMode::Insecure);
        }
    }
    let client = builder.build().map_err(bad_url)?;
    match tokio::time::timeout(OPEN_TIMEOUT, client.get_async_connection()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(source)) if is_tls_failure(&source) => Err(RedisError::Tls { url: shown, source }),
        Ok(Err(source)) if refuses_credentials(&source) => Err(RedisError::Auth { url: shown, source }),
        Ok(Err(source)) if is_refused_command(&source) => Err(RedisError::NoPermission { url: shown, source }),
        Ok(Err(source)) => Err(RedisError::NoCluster { url: shown, source }),
        Err(_) => Err(RedisError::ConnectTimeout { url: shown }),
    }
}

/// Watches the current client every [`PROBE_EVERY`] and has it rebuilt when it stops answering;
/// rereads the layout every [`RELEARN_EVERY`] probes. Ends once every clone of the connection is
/// gone.
async fn watch(shared: Weak<Shared>) {
    for round in 0_u64.. {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(shared) = shared.upgrade() else { return };
        let this = ClusterConn { shared };
        let Current { conn, generation } = this.current();
        if this.is_wedged(conn, round).await {
            this.rebuild_after(generation);
        } else if round % RELEARN_EVERY == RELEARN_EVERY - 1 {
            let _ = tokio::time::timeout(PROBE_TIMEOUT, this.layout()).await;
        }
    }
}

/// The nodes a `CLUSTER SLOTS` reply names, each once: `(host, port, whether it is a master)`.
fn layout_nodes(layout: Vec<Value>) -> Vec<(String, u16, bool)> {
    let mut nodes: Vec<(String, u16, bool)> = Vec::new();
    for range in layout {
        // [first slot, last slot, [host, port, id, …] of the master, then of each replica]
        let Value::Array(range) = range else { continue };
        for (index, node) in range.into_iter().enumerate().skip(2) {
            let Value::Array(node) = node else { continue };
            let host = match node.first() {
                Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
                Some(Value::SimpleString(host)) => host.clone(),
                _ => continue,
            };
            let Some(Value::Int(port)) = node.get(1) else { continue };
            let Ok(port) = u16::try_from(*port) else { continue };
            // An empty host or `?` is a node whose address the cluster does not know.
            if host.is_empty() || host == "?" || nodes.iter().any(|(h, p, _)| *h == host && *p == port) {
                continue;
            }
            nodes.push((host, port, index == 2));
        }
    }
    nodes
}

impl ClusterConn {
    /// Connects to the cluster that `target`'s seeds belong to, with TLS as `tls` asks; `shown`
    /// is the URL as messages show it (its password replaced).
    pub async fn open(target: ClusterTarget, tls: &RedisSettings, shown: String) -> Result<Self, RedisError> {
        let conn = connect(&target, &target.seeds, tls, &shown).await?;
        let shared = Shared {
            current: RwLock::new(Current { conn, generation: 0 }),
            target,
            tls: tls.clone(),
            shown,
            known: Mutex::new(Vec::new()),
            rebuild: SingleFlight::new(REBUILD_EVERY),
            rebuilt: tokio::sync::watch::Sender::new(0),
        };
        let this = Self { shared: Arc::new(shared) };
        // Learning the other nodes is for a later rebuild only: a refusal now is no reason to fail.
        let _ = this.layout().await;
        tokio::spawn(watch(Arc::downgrade(&this.shared)));
        Ok(this)
    }

    /// The URL, for messages (its password hidden).
    pub fn shown(&self) -> &str {
        &self.shared.shown
    }

    fn current(&self) -> Current {
        self.shared.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Runs `cmd` with `routing` on the current client.
    async fn route(&self, cmd: Cmd, routing: RoutingInfo) -> Result<Value, redis::RedisError> {
        let Current { mut conn, generation } = self.current();
        self.guarded(generation, conn.route_command(cmd, routing)).await
    }

    /// Awaits `command`, sent on the client of `generation`: it fails at once if that client is
    /// replaced meanwhile, and the caller's retry goes to the new one. (A pipeline split over
    /// slots fails as a whole then, though some of its parts may have run: its writes are
    /// fenced, so the retry that runs them again is harmless.)
    async fn guarded<T>(
        &self,
        generation: u64,
        command: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, redis::RedisError> {
        let mut rebuilt = self.shared.rebuilt.subscribe();
        let replaced = async move {
            if rebuilt.wait_for(|current| *current > generation).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            // A command that has its answer keeps it, though the client was replaced meanwhile.
            biased;
            result = command => result,
            () = replaced => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the Redis Cluster client was rebuilt while this command waited",
            )
            .into()),
        }
    }

    /// Whether `conn` has stopped answering: a `PING` to each of two masters of the last layout
    /// (`round` picks which), sent at once, and neither answered within [`PROBE_TIMEOUT`]. A ping
    /// that fails (a node down, a master unknown to the client) is the client answering. Without
    /// a layout, one ping to any node.
    async fn is_wedged(&self, conn: ClusterConnection, round: u64) -> bool {
        let masters: Vec<(String, u16)> = {
            let known = self.shared.known.lock().unwrap_or_else(PoisonError::into_inner);
            known.iter().filter(|(_, _, master)| *master).map(|(host, port, _)| (host.clone(), *port)).collect()
        };
        let routes: Vec<SingleNodeRoutingInfo> = if masters.is_empty() {
            vec![SingleNodeRoutingInfo::Random]
        } else {
            let first = usize::try_from(round).unwrap_or(0) % masters.len();
            let picked = [first, (first + 1) % masters.len()];
            let picked = if masters.len() == 1 { &picked[..1] } else { &picked[..] };
            picked
                .iter()
                .map(|&i| SingleNodeRoutingInfo::ByAddress { host: masters[i].0.clone(), port: masters[i].1 })
                .collect()
        };
        let pings = routes.into_iter().map(|route| {
            let mut conn = conn.clone();
            let ping =
                async move { conn.route_command(redis::cmd("PING").clone(), RoutingInfo::SingleNode(route)).await };
            tokio::time::timeout(PROBE_TIMEOUT, ping)
        });
        join_all(pings).await.iter().all(Result::is_err)
    }

    /// Starts a rebuild of the client of `generation`, unless one runs or it was rebuilt since.
    fn rebuild_after(&self, generation: u64) {
        if self.current().generation != generation {
            return;
        }
        let this = self.clone();
        if self.shared.rebuild.spawn(async move { this.rebuild(generation).await }) {
            tracing::warn!(cluster = %self.shared.shown, "the Redis Cluster client stopped answering; rebuilding it");
        }
    }

    /// Replaces the client of `generation` by a new one, connected through the seeds and the
    /// nodes of the last layout; bounded by the connect's own timeout.
    async fn rebuild(&self, generation: u64) {
        if self.current().generation != generation {
            return;
        }
        let mut nodes = self.shared.target.seeds.clone();
        for (host, port, _) in self.shared.known.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            if !nodes.iter().any(|(h, p)| h == host && p == port) {
                nodes.push((host.clone(), *port));
            }
        }
        match connect(&self.shared.target, &nodes, &self.shared.tls, &self.shared.shown).await {
            Ok(conn) => {
                tracing::warn!(cluster = %self.shared.shown, "reconnected to the Redis Cluster afresh");
                *self.shared.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Current { conn, generation: generation + 1 };
                self.shared.rebuilt.send_replace(generation + 1);
                // Bounded: a new client that is wedged too is the watchdog's to find.
                let _ = tokio::time::timeout(PROBE_TIMEOUT, self.layout()).await;
            }
            Err(e) => tracing::warn!(error = %e, "could not reconnect to the Redis Cluster; will try again"),
        }
    }

    /// The nodes as the cluster describes itself now (`CLUSTER SLOTS`), remembered for a rebuild.
    async fn layout(&self) -> Result<Vec<(String, u16, bool)>, redis::RedisError> {
        let Current { mut conn, generation } = self.current();
        let slots = redis::cmd("CLUSTER").arg("SLOTS").clone();
        let reply = self.guarded(generation, async move { slots.query_async::<Vec<Value>>(&mut conn).await }).await;
        let nodes = layout_nodes(reply?);
        self.shared.known.lock().unwrap_or_else(PoisonError::into_inner).clone_from(&nodes);
        Ok(nodes)
    }

    /// A round trip to any one node: the cluster answers, though a master may be down (a plain
    /// `PING` goes to every master and fails with any of them).
    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        self.route(redis::cmd("PING").clone(), RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random)).await.map(drop)
    }

    /// The masters as the cluster describes itself now: `(host, port)` of each.
    pub async fn masters(&self) -> Result<Vec<(String, u16)>, redis::RedisError> {
        let nodes = self.layout().await?;
        Ok(nodes.into_iter().filter(|(_, _, master)| *master).map(|(host, port, _)| (host, port)).collect())
    }

    /// A client for one node, for a connection of its own (pub/sub).
    pub fn node_client(&self, host: &str, port: u16) -> Result<redis::Client, RedisError> {
        crate::tls::client(&self.shared.target.node_url(host, port), &self.shared.tls)
    }

    /// Runs `cmd` on the master at `host:port`.
    pub async fn on_node(&self, host: &str, port: u16, cmd: Cmd) -> Result<Value, redis::RedisError> {
        self.route(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: host.to_owned(), port })).await
    }

    /// `INFO <section>` of every master, each field that is a number summed over them (memory,
    /// commands processed), any other field as the first master has it.
    pub async fn info(&self, section: &str) -> Result<HashMap<String, String>, redis::RedisError> {
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::Special)));
        let reply = self.route(redis::cmd("INFO").arg(section).clone(), routing).await?;
        let texts: Vec<String> = match reply {
            Value::Map(nodes) => nodes
                .into_iter()
                .map(|(_, text)| redis::from_redis_value(text).map_err(redis::RedisError::from))
                .collect::<Result<_, _>>()?,
            other => vec![redis::from_redis_value(other).map_err(redis::RedisError::from)?],
        };
        let mut fields: HashMap<String, String> = HashMap::new();
        for (key, value) in texts.iter().flat_map(|text| crate::info_fields(text)) {
            match (fields.get(&key).and_then(|v| v.parse::<i64>().ok()), value.parse::<i64>()) {
                (Some(sum), Ok(n)) => fields.insert(key, (sum + n).to_string()),
                (None, _) if !fields.contains_key(&key) => fields.insert(key, value),
                _ => None,
            };
        }
        Ok(fields)
    }
}

/// Whether the cluster refused a command to this user (`NOPERM`): a user without
/// `+cluster|slots` cannot learn the layout.
fn is_refused_command(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) || error.to_string().contains("NOPERM")
}

/// The slot of the first key `cmd` names, or `None` for a command that names none. A command is
/// taken to name its key first unless it is a script call (its first declared key) or one of the
/// keyless commands below: that is every command ranq pipelines. A command whose key comes later
/// (`OBJECT`, `XREAD`, …) or that names keys of several slots would be sent to the wrong node and
/// answered `MOVED` or `CROSSSLOT`, never run on the wrong keys.
fn slot_of(cmd: &Cmd) -> Option<Slot> {
    let mut args = cmd.args_iter().filter_map(|arg| match arg {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()?.to_ascii_uppercase();
    let key = match name.as_slice() {
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let _script = args.next()?;
            let keys: usize = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
            if keys == 0 {
                return None;
            }
            args.next()?
        }
        b"PUBLISH" | b"PING" | b"ECHO" | b"INFO" | b"TIME" | b"ROLE" | b"SCRIPT" | b"CLUSTER" | b"CLIENT" | b"ACL"
        | b"CONFIG" | b"DBSIZE" | b"FLUSHALL" | b"FLUSHDB" | b"SCAN" | b"RANDOMKEY" | b"KEYS" => {
            return None;
        }
        _ => args.next()?,
    };
    Some(Slot::for_key(key))
}

impl ConnectionLike for ClusterConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let Current { mut conn, generation } = self.current();
            self.guarded(generation, conn.req_packed_command(cmd)).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let Current { conn, generation } = self.current();
            self.guarded(generation, split_by_slot(conn, pipeline, offset, count)).await
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// Runs `pipeline` on `conn`: as it is when it is a transaction or all its commands are in one
/// slot, else as one pipeline per slot, all sent at once, and then the keyless commands.
async fn split_by_slot(
    mut conn: ClusterConnection,
    pipeline: &Pipeline,
    offset: usize,
    count: usize,
) -> Result<Vec<Value>, redis::RedisError> {
    let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
    // A transaction must be in one slot: the server says so if it is not.
    if pipeline.is_transaction() {
        return conn.req_packed_commands(pipeline, offset, count).await;
    }
    let mut by_slot: HashMap<Slot, Vec<usize>> = HashMap::new();
    let mut keyless: Vec<usize> = Vec::new();
    for (index, cmd) in commands.iter().enumerate() {
        match slot_of(cmd) {
            Some(slot) => by_slot.entry(slot).or_default().push(index),
            None => keyless.push(index),
        }
    }
    if by_slot.len() + usize::from(!keyless.is_empty()) <= 1 {
        return conn.req_packed_commands(pipeline, offset, count).await;
    }
    let mut replies: Vec<Option<Value>> = vec![None; commands.len()];
    let part = |indexes: Vec<usize>| {
        let mut conn = conn.clone();
        let mut sub = redis::pipe();
        for &index in &indexes {
            sub.add_command(commands[index].clone());
        }
        async move {
            let values = conn.req_packed_commands(&sub, 0, indexes.len()).await?;
            Ok::<_, redis::RedisError>(indexes.into_iter().zip(values))
        }
    };
    let mut failure = None;
    for part in join_all(by_slot.into_values().map(part)).await {
        match part {
            Ok(values) => values.for_each(|(index, value)| replies[index] = Some(value)),
            Err(error) => failure = failure.or(Some(error)),
        }
    }
    // Even when a part failed: what the others wrote is announced (a `PUBLISH` of groups
    // written), and the caller's retry finds the rest.
    if !keyless.is_empty() {
        for (index, value) in part(keyless).await? {
            replies[index] = Some(value);
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    replies
        .into_iter()
        .skip(offset)
        .take(count)
        .map(|value| value.ok_or_else(|| (redis::ErrorKind::Io, "a node answered fewer replies than asked").into()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_belongs_to_the_slot_of_its_first_key_and_a_script_to_its_first_declared_key() {
        let slot = |cmd: &Cmd| slot_of(cmd);
        let top = Slot::for_key("ranq:top:{7}");
        assert_eq!(slot(redis::cmd("GET").arg("ranq:top:{7}")), Some(top));
        assert_eq!(slot(redis::cmd("evalsha").arg("abc").arg(2).arg("ranq:top:{7}").arg("ranq:gone:{7}")), Some(top));
        assert_eq!(slot(redis::cmd("EVALSHA").arg("abc").arg(0).arg("x")), None);
        assert_eq!(slot(redis::cmd("PUBLISH").arg("ranq:written").arg("7")), None);
        assert_eq!(slot(redis::cmd("ZADD").arg("ranq:index").arg(1).arg(7)), Some(Slot::for_key("ranq:index")));
    }

    #[test]
    fn a_layout_names_each_node_once_its_master_first_and_skips_unknown_addresses() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![Value::BulkString(host.into()), Value::Int(port), Value::BulkString(b"id".to_vec())])
        };
        let range = |first: i64, last: i64, nodes: Vec<Value>| {
            Value::Array([vec![Value::Int(first), Value::Int(last)], nodes].concat())
        };
        let layout = vec![
            range(0, 5460, vec![node("10.0.0.1", 7000), node("10.0.0.4", 7003)]),
            range(5461, 10922, vec![node("10.0.0.2", 7001), node("?", 7004)]),
            range(10923, 12000, vec![node("10.0.0.3", 7002), node("", 7005)]),
            range(12001, 16383, vec![node("10.0.0.3", 7002)]),
        ];
        assert_eq!(
            layout_nodes(layout),
            vec![
                ("10.0.0.1".to_owned(), 7000, true),
                ("10.0.0.4".to_owned(), 7003, false),
                ("10.0.0.2".to_owned(), 7001, true),
                ("10.0.0.3".to_owned(), 7002, true),
            ]
        );
    }
}
