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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use ranq_runtime::settings::RedisSettings;
use redis::aio::ConnectionLike;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::{Arg, Cmd, Pipeline, RedisFuture, Value};

use crate::error::{CONNECT_TIMEOUT, RedisError, refuses_credentials};
use crate::target::ClusterTarget;
use crate::tls::{certificates, is_tls_failure};

/// Longest wait for any one reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest the first connect may take: the seeds asked in turn for the layout, then a
/// connection opened to each master.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// A connection to a whole Redis Cluster. Cheap to clone: clones share the node connections.
#[derive(Clone)]
pub(crate) struct ClusterConn {
    conn: ClusterConnection,
    target: Arc<ClusterTarget>,
    tls: Arc<RedisSettings>,
    /// The URL with its password replaced, for messages.
    shown: Arc<str>,
}

impl ClusterConn {
    /// Connects to the cluster that `target`'s seeds belong to, with TLS as `tls` asks; `shown`
    /// is the URL as messages show it (its password replaced).
    pub async fn open(target: ClusterTarget, tls: &RedisSettings, shown: String) -> Result<Self, RedisError> {
        let bad_url = |_| RedisError::BadUrl { url: shown.clone() };
        let mut builder = ClusterClientBuilder::new(target.seed_urls())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT);
        if target.tls {
            if let Some(certs) = certificates(tls)? {
                builder = builder.certs(certs);
            }
            if tls.tls_insecure || target.insecure {
                builder = builder.tls(redis::TlsMode::Insecure);
            }
        }
        let client = builder.build().map_err(bad_url)?;
        let conn = match tokio::time::timeout(OPEN_TIMEOUT, client.get_async_connection()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(source)) if is_tls_failure(&source) => return Err(RedisError::Tls { url: shown, source }),
            Ok(Err(source)) if refuses_credentials(&source) => return Err(RedisError::Auth { url: shown, source }),
            Ok(Err(source)) if is_refused_command(&source) => {
                return Err(RedisError::NoPermission { url: shown, source });
            }
            Ok(Err(source)) => return Err(RedisError::NoCluster { url: shown, source }),
            Err(_) => return Err(RedisError::ConnectTimeout { url: shown }),
        };
        Ok(Self { conn, target: Arc::new(target), tls: Arc::new(tls.clone()), shown: shown.into() })
    }

    /// The URL, for messages (its password hidden).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// A round trip to any one node: the cluster answers, though a master may be down (a plain
    /// `PING` goes to every master and fails with any of them).
    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
        self.conn.clone().route_command(redis::cmd("PING").clone(), routing).await.map(drop)
    }

    /// The masters as the cluster describes itself now: `(host, port)` of each.
    pub async fn masters(&self) -> Result<Vec<(String, u16)>, redis::RedisError> {
        let layout: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut self.conn.clone()).await?;
        let mut masters: Vec<(String, u16)> = Vec::new();
        for range in layout {
            // [first slot, last slot, [host, port, id, …], replicas…]
            let Value::Array(range) = range else { continue };
            let Some(Value::Array(master)) = range.get(2) else { continue };
            let host = match master.first() {
                Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
                Some(Value::SimpleString(host)) => host.clone(),
                _ => continue,
            };
            let Some(Value::Int(port)) = master.get(1) else { continue };
            let Ok(port) = u16::try_from(*port) else { continue };
            if !masters.contains(&(host.clone(), port)) {
                masters.push((host, port));
            }
        }
        Ok(masters)
    }

    /// A client for one node, for a connection of its own (pub/sub).
    pub fn node_client(&self, host: &str, port: u16) -> Result<redis::Client, RedisError> {
        crate::tls::client(&self.target.node_url(host, port), &self.tls)
    }

    /// Runs `cmd` on the master at `host:port`.
    pub async fn on_node(&self, host: &str, port: u16, cmd: Cmd) -> Result<Value, redis::RedisError> {
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: host.to_owned(), port });
        self.conn.clone().route_command(cmd, routing).await
    }

    /// `INFO <section>` of every master, each field that is a number summed over them (memory,
    /// commands processed), any other field as the first master has it.
    pub async fn info(&self, section: &str) -> Result<HashMap<String, String>, redis::RedisError> {
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::Special)));
        let reply = self.conn.clone().route_command(redis::cmd("INFO").arg(section).clone(), routing).await?;
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
        self.conn.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
            // A transaction must be in one slot: the server says so if it is not.
            if pipeline.is_transaction() {
                return self.conn.req_packed_commands(pipeline, offset, count).await;
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
                return self.conn.req_packed_commands(pipeline, offset, count).await;
            }
            let mut replies: Vec<Option<Value>> = vec![None; commands.len()];
            let part = |indexes: Vec<usize>| {
                let mut conn = self.conn.clone();
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
                .map(|value| {
                    value.ok_or_else(|| (redis::ErrorKind::Io, "a node answered fewer replies than asked").into())
                })
                .collect()
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
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
}
