//! Finding the master through Sentinel: ask each sentinel in turn for the master's address, and
//! believe it only once the server there says it is a master (`ROLE`) — during a failover a
//! sentinel may still name the old one. A sentinel is asked without credentials, and again with
//! the URL's when it wants them.

use ranq_runtime::settings::RedisSettings;

use crate::error::{CONNECT_TIMEOUT, RedisError, refuses_credentials};
use crate::target::SentinelTarget;
use crate::tls::{client, is_tls_failure};

/// How to find the current master, again and again.
#[derive(Debug, Clone)]
pub(crate) struct MasterFinder {
    pub target: SentinelTarget,
    pub tls: RedisSettings,
    /// The sentinel URL, its password shown as `***`, for messages.
    pub shown: String,
}

/// One round trip of `cmd` on a fresh connection to `client`, bounded by the connect timeout.
async fn ask<T: redis::FromRedisValue>(client: &redis::Client, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    let asked = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        cmd.query_async::<T>(&mut conn).await
    };
    tokio::time::timeout(CONNECT_TIMEOUT, asked).await.unwrap_or_else(|_| {
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {CONNECT_TIMEOUT:?}")).into())
    })
}

/// What one sentinel said.
enum Answer {
    /// The master is at this address, it says.
    Names(String, u16),
    /// It knows no master of that name.
    Unaware,
    /// It did not answer, for this reason.
    Away(String),
    /// It refused in a way only a change of configuration mends (credentials, TLS).
    Misconfigured(RedisError),
}

impl MasterFinder {
    /// The URL of the current master. The sentinels are asked all at once; the servers they name
    /// are then asked for their role, in the sentinels' order. A configuration mistake is the
    /// error only when nothing worked, so one badly set-up sentinel does not hide the others.
    pub async fn locate(&self) -> Result<String, RedisError> {
        let answers = futures::future::join_all(self.target.sentinels.iter().map(|s| self.ask_sentinel(s))).await;
        let mut named: Vec<(String, u16)> = Vec::new();
        let mut unaware = 0;
        let mut reasons = Vec::new();
        let mut mistake = None;
        for ((sentinel, at), answer) in self.target.sentinels.iter().zip(answers) {
            match answer {
                Answer::Names(host, port) if !named.contains(&(host.clone(), port)) => named.push((host, port)),
                Answer::Names(..) => {}
                Answer::Unaware => unaware += 1,
                Answer::Away(reason) => reasons.push(format!("{sentinel}:{at}: {reason}")),
                Answer::Misconfigured(e) => {
                    reasons.push(format!("{sentinel}:{at}: {e}"));
                    mistake.get_or_insert(e);
                }
            }
        }
        for (host, port) in &named {
            let url = self.target.node_url(host, *port);
            match ask::<Vec<redis::Value>>(&client(&url, &self.tls)?, &redis::cmd("ROLE")).await {
                Ok(role) if matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") => {
                    return Ok(url);
                }
                Ok(_) => reasons.push(format!("{host}:{port} is not a master yet")),
                Err(source) => match misconfigured(&url, source) {
                    Ok(source) => reasons.push(format!("{host}:{port}: {source}")),
                    Err(e) => {
                        reasons.push(format!("{host}:{port}: {e}"));
                        mistake.get_or_insert(e);
                    }
                },
            }
        }
        if let Some(mistake) = mistake {
            return Err(mistake);
        }
        if named.is_empty() && unaware > 0 {
            return Err(RedisError::UnknownMaster { url: self.shown.clone(), master: self.target.master.clone() });
        }
        Err(RedisError::NoMaster { url: self.shown.clone(), reason: reasons.join("; ") })
    }

    /// What `sentinel` says of the master: asked without credentials, then — if it wants them —
    /// with the URL's, then with the URL's password alone (a sentinel with only `requirepass`
    /// knows no user).
    async fn ask_sentinel(&self, sentinel: &(String, u16)) -> Answer {
        let mut get = redis::cmd("SENTINEL");
        get.arg("get-master-addr-by-name").arg(&self.target.master);
        let mut refused = None;
        for auth in self.target.sentinel_auths() {
            let url = self.target.sentinel_url(sentinel, &auth);
            let asked = match client(&url, &self.tls) {
                Ok(client) => ask::<Option<(String, u16)>>(&client, &get).await,
                Err(e) => return Answer::Misconfigured(e),
            };
            return match asked {
                Ok(Some((host, port))) => Answer::Names(host, port),
                Ok(None) => Answer::Unaware,
                Err(source) if refuses_credentials(&source) => {
                    refused = Some((url, source));
                    continue;
                }
                Err(source) => match misconfigured(&url, source) {
                    Ok(source) => Answer::Away(source.to_string()),
                    Err(e) => Answer::Misconfigured(e),
                },
            };
        }
        match refused {
            Some((url, source)) => Answer::Misconfigured(RedisError::Auth { url: ranq_core::redact_url(&url), source }),
            None => Answer::Away("not asked".to_owned()),
        }
    }
}

/// `source` as the configuration mistake it shows (credentials refused, a command the ACL user
/// may not run, a TLS handshake that failed), or handed back when it is the server's being away.
fn misconfigured(url: &str, source: redis::RedisError) -> Result<redis::RedisError, RedisError> {
    let url = ranq_core::redact_url(url);
    if refuses_credentials(&source) {
        Err(RedisError::Auth { url, source })
    } else if source.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) {
        Err(RedisError::NoPermission { url, source })
    } else if is_tls_failure(&source) {
        Err(RedisError::Tls { url, source })
    } else {
        Ok(source)
    }
}
