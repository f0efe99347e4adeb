//! Finding the master through Sentinel: ask each sentinel in turn for the master's address, and
//! believe it only once the server there says it is a master (`ROLE`) — during a failover a
//! sentinel may still name the old one. A sentinel is asked without credentials, and again with
//! the URL's when it answers `NOAUTH`.

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

impl MasterFinder {
    /// The URL of the current master.
    pub async fn locate(&self) -> Result<String, RedisError> {
        let mut reasons = Vec::new();
        let mut known = false;
        for sentinel in &self.target.sentinels {
            let addr = match self.ask_sentinel(sentinel).await? {
                Ok(addr) => addr,
                Err(reason) => {
                    reasons.push(format!("{}:{}: {reason}", sentinel.0, sentinel.1));
                    continue;
                }
            };
            let Some((host, port)) = addr else { continue };
            known = true;
            let url = self.target.node_url(&host, port);
            match ask::<Vec<redis::Value>>(&client(&url, &self.tls)?, &redis::cmd("ROLE")).await {
                Ok(role) if matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") => {
                    return Ok(url);
                }
                Ok(_) => reasons.push(format!("{host}:{port} is not a master yet")),
                Err(source) => reasons.push(format!("{host}:{port}: {}", misconfigured(&url, source)?)),
            }
        }
        if !known && reasons.len() < self.target.sentinels.len() {
            return Err(RedisError::UnknownMaster { url: self.shown.clone(), master: self.target.master.clone() });
        }
        // Every sentinel naming the same dead master says it once.
        reasons.dedup();
        Err(RedisError::NoMaster { url: self.shown.clone(), reason: reasons.join("; ") })
    }

    /// What `sentinel` says the master's address is: asked without credentials, then with the
    /// URL's if it wants them. A failure of the configuration's making is the error; any other
    /// is the reason to ask the next sentinel.
    async fn ask_sentinel(
        &self,
        sentinel: &(String, u16),
    ) -> Result<redis::RedisResult<Option<(String, u16)>>, RedisError> {
        let mut get = redis::cmd("SENTINEL");
        get.arg("get-master-addr-by-name").arg(&self.target.master);
        let mut url = self.target.sentinel_url(sentinel, false);
        let mut answer = ask(&client(&url, &self.tls)?, &get).await;
        if answer.as_ref().is_err_and(refuses_credentials) && !self.target.credentials.is_empty() {
            url = self.target.sentinel_url(sentinel, true);
            answer = ask(&client(&url, &self.tls)?, &get).await;
        }
        match answer {
            Ok(addr) => Ok(Ok(addr)),
            Err(source) => Ok(Err(misconfigured(&url, source)?)),
        }
    }
}

/// `source` as the configuration mistake it shows (credentials refused, a TLS handshake that
/// failed), or handed back when it is the server's being away.
fn misconfigured(url: &str, source: redis::RedisError) -> Result<redis::RedisError, RedisError> {
    let url = ranq_core::redact_url(url);
    if refuses_credentials(&source) {
        Err(RedisError::Auth { url, source })
    } else if is_tls_failure(&source) {
        Err(RedisError::Tls { url, source })
    } else {
        Ok(source)
    }
}
