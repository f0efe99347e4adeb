//! A Redis Sentinel deployment of the caller's own: a master, a replica and three sentinels
//! (`redis-server --sentinel`), each a process on a free port with a directory of its own,
//! watching a master named `ranqmaster` with a quorum of two; optionally every process behind a
//! password, or speaking TLS only (replication and the sentinels' own links included). It fails over on demand — asked
//! (`SENTINEL FAILOVER`) or by a SIGKILL of the master — and every process stops when the handle
//! drops. Every wait is bounded: a deployment that does not come up, or a failover that does not
//! happen, is an error naming what did not.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The name the sentinels know the master by.
pub const MASTER: &str = "ranqmaster";

/// How the deployment's processes protect themselves.
#[derive(Debug, Clone, Default)]
pub struct Protection {
    /// Every process's `requirepass` (the sentinels' too), and what the replica and the
    /// sentinels authenticate to the data nodes with.
    pub password: Option<String>,
    /// TLS only, with these files: no plaintext port anywhere.
    pub tls: Option<ServerTls>,
}

/// A server certificate and key, and the CA that signed it (PEM files).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl ServerTls {
    /// The directives that make a server speak TLS only on `port`. Clients need no certificate
    /// of their own.
    fn directives(&self, port: u16) -> Vec<(String, String)> {
        let file = |p: &Path| p.display().to_string();
        [
            ("port", "0".to_owned()),
            ("tls-port", port.to_string()),
            ("tls-cert-file", file(&self.cert)),
            ("tls-key-file", file(&self.key)),
            ("tls-ca-cert-file", file(&self.ca)),
            ("tls-auth-clients", "no".to_owned()),
            ("tls-replication", "yes".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

#[derive(Debug)]
struct Server {
    port: u16,
    child: Option<Child>,
}

/// One master, one replica, three sentinels.
#[derive(Debug)]
pub struct Sentinels {
    dir: PathBuf,
    protection: Protection,
    data: Vec<Server>,
    sentinels: Vec<Server>,
}

/// Starts `redis-server` (a sentinel with `sentinel`) in `home` with a config file of
/// `directives`: the sentinels rewrite theirs as they learn, and a file keeps passwords off the
/// command line.
fn spawn_with(home: &Path, directives: &[(String, String)], sentinel: bool) -> io::Result<Child> {
    std::fs::create_dir_all(home)?;
    let mut conf = format!("dir {}\n", home.display());
    for (key, value) in directives {
        let value = if value.is_empty() { "\"\"".to_owned() } else { value.clone() };
        conf.push_str(&format!("{key} {value}\n"));
    }
    let file = home.join("redis.conf");
    std::fs::write(&file, conf)?;
    let mut cmd = Command::new("redis-server");
    cmd.arg(&file);
    if sentinel {
        cmd.arg("--sentinel");
    }
    cmd.current_dir(home)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| io::Error::other(format!("cannot start redis-server (is it on PATH?): {e}")))
}

async fn wait_for_port(port: u16) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if Instant::now() >= deadline {
            return Err(io::Error::other(format!("nothing listens on port {port} 10 s after redis-server started")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

impl Sentinels {
    /// Starts the five processes under `dir` and waits until every sentinel sees the replica and
    /// the two other sentinels, so that a failover can happen.
    pub async fn start(dir: &Path) -> io::Result<Self> {
        Self::start_with(dir, Protection::default()).await
    }

    /// [`Sentinels::start`], every process protected as `protection` says.
    pub async fn start_with(dir: &Path, protection: Protection) -> io::Result<Self> {
        // Built as it goes, so that whatever started is stopped if a later step fails.
        let mut set = Self { dir: dir.to_owned(), protection, data: Vec::new(), sentinels: Vec::new() };
        for i in 0..2 {
            let port = ranq_launch::free_port()?;
            let mut directives = set.directives(port);
            directives.extend([("save".into(), String::new()), ("appendonly".into(), "no".into())]);
            if i == 1 {
                let master = set.data.first().map_or(0, |m| m.port);
                directives.push(("replicaof".into(), format!("127.0.0.1 {master}")));
            }
            if let Some(password) = &set.protection.password {
                directives.push(("masterauth".into(), password.clone()));
            }
            let home = dir.join(format!("data-{port}"));
            let child = spawn_with(&home, &directives, false)?;
            set.data.push(Server { port, child: Some(child) });
            wait_for_port(port).await?;
        }
        let master = set.data[0].port;
        for _ in 0..3 {
            let port = ranq_launch::free_port()?;
            let home = dir.join(format!("sentinel-{port}"));
            let mut directives = set.directives(port);
            directives.extend([
                ("sentinel monitor".into(), format!("{MASTER} 127.0.0.1 {master} 2")),
                ("sentinel down-after-milliseconds".into(), format!("{MASTER} 1000")),
                ("sentinel failover-timeout".into(), format!("{MASTER} 4000")),
                ("sentinel parallel-syncs".into(), format!("{MASTER} 1")),
            ]);
            if let Some(password) = &set.protection.password {
                directives.push(("sentinel auth-pass".into(), format!("{MASTER} {password}")));
            }
            let child = spawn_with(&home, &directives, true)?;
            set.sentinels.push(Server { port, child: Some(child) });
            wait_for_port(port).await?;
        }
        set.wait_until_ready().await?;
        Ok(set)
    }

    /// What every process of the deployment listens and authenticates with.
    fn directives(&self, port: u16) -> Vec<(String, String)> {
        let mut directives = match &self.protection.tls {
            Some(tls) => tls.directives(port),
            None => vec![("port".into(), port.to_string())],
        };
        directives.push(("bind".into(), "127.0.0.1".into()));
        if let Some(password) = &self.protection.password {
            directives.push(("requirepass".into(), password.clone()));
        }
        directives
    }

    /// The URL of the process on `port`, for the deployment's own questions.
    fn node_url(&self, port: u16) -> String {
        let auth = self.protection.password.as_ref().map_or(String::new(), |p| format!(":{p}@"));
        match self.protection.tls {
            // The harness only asks; whether ranq verifies is what the caller tests.
            Some(_) => format!("rediss://{auth}127.0.0.1:{port}/#insecure"),
            None => format!("redis://{auth}127.0.0.1:{port}"),
        }
    }

    /// One question to the process on `port` (a data node or a sentinel), with the deployment's
    /// password and TLS, answered within two seconds or failed.
    pub async fn query<T: redis::FromRedisValue>(&self, port: u16, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let client = redis::Client::open(self.node_url(port))?;
        let asked = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            cmd.query_async(&mut conn).await
        };
        tokio::time::timeout(Duration::from_secs(2), asked).await.unwrap_or_else(|_| {
            Err(io::Error::new(io::ErrorKind::TimedOut, format!("port {port} did not answer within 2 s")).into())
        })
    }

    async fn wait_until_ready(&self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut ready = true;
            for s in &self.sentinels {
                let mut replicas = redis::cmd("SENTINEL");
                replicas.arg("replicas").arg(MASTER);
                let mut peers = redis::cmd("SENTINEL");
                peers.arg("sentinels").arg(MASTER);
                let replicas: Vec<redis::Value> = self.query(s.port, &replicas).await.unwrap_or_default();
                let peers: Vec<redis::Value> = self.query(s.port, &peers).await.unwrap_or_default();
                ready &= !replicas.is_empty() && peers.len() == 2;
            }
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other("the sentinels did not see the replica and each other within 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `redis+sentinel://[:password@]…/ranqmaster` (`rediss+sentinel://` with TLS), naming every
    /// sentinel.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        let auth = self.protection.password.as_ref().map_or(String::new(), |p| format!(":{p}@"));
        let scheme = if self.protection.tls.is_some() { "rediss+sentinel" } else { "redis+sentinel" };
        format!("{scheme}://{auth}{}/{MASTER}", hosts.join(","))
    }

    /// The port the sentinels name as the master now.
    pub async fn master_port(&self) -> io::Result<u16> {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("get-master-addr-by-name").arg(MASTER);
        for s in &self.sentinels {
            if let Ok(Some((_, port))) = self.query::<Option<(String, u16)>>(s.port, &cmd).await {
                return Ok(port);
            }
        }
        Err(io::Error::other(format!("no sentinel names a master for {MASTER}")))
    }

    /// Waits until the sentinels name a master other than `old` that says it is one.
    pub async fn wait_for_new_master(&self, old: u16) -> io::Result<u16> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let port = self.master_port().await?;
            if port != old {
                let role: Vec<redis::Value> = self.query(port, &redis::cmd("ROLE")).await.unwrap_or_default();
                if matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
                    return Ok(port);
                }
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!("no master other than port {old} within 60 s")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asks the sentinels to fail over now; returns the old master's port.
    pub async fn failover(&self) -> io::Result<u16> {
        let old = self.master_port().await?;
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("FAILOVER").arg(MASTER);
        let deadline = Instant::now() + Duration::from_secs(30);
        // Refused (NOGOODSLAVE) while the replica is still syncing: ask again.
        while let Err(e) = self.query::<()>(self.sentinels[0].port, &cmd).await {
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!("SENTINEL FAILOVER refused for 30 s: {e}")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(old)
    }

    /// SIGKILLs the data node on `port`.
    pub fn kill(&mut self, port: u16) {
        let server = self.data.iter_mut().find(|s| s.port == port).expect("a data node on that port");
        if let Some(mut child) = server.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for server in self.data.iter_mut().chain(self.sentinels.iter_mut()) {
            if let Some(mut child) = server.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
