//! `ranq-launch` starts and stops processes on this machine: ranq's own roles as child processes
//! with the environment that points them at one database, one Redis and one namespace; a private
//! `redis-server` on a free port, or a private Redis Cluster of six; and the graceful stop
//! (SIGTERM, a grace period, then SIGKILL).
//!
//! `ranq up` runs a local fleet with it, the benchmarks their fleets, and the integration tests
//! theirs, so there is one way to launch a role and one way to stop it.
//!
//! Architecture Invariant: nothing here speaks the fleet's protocols (no SQL, no Redis client): it
//! starts programs and hands them their environment; what it must ask a server (is the cluster
//! ready, which node is a master) it asks through that server's own tool, `redis-cli`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A free TCP port on loopback (free when asked: another process may take it before it is used,
/// which on a test machine is rare enough).
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The program `name` in the directory of the running executable: where `cargo build` puts the
/// workspace's binaries side by side.
pub fn sibling_exe(name: &str) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let sibling = exe.with_file_name(name);
    if sibling.is_file() {
        Ok(sibling)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} not found beside {} (build both with `cargo build --release`)",
                sibling.display(),
                exe.display()
            ),
        ))
    }
}

/// How to start ranq's roles: the binary, and the environment every role gets.
#[derive(Debug, Clone)]
pub struct Launcher {
    exe: PathBuf,
    vars: BTreeMap<String, String>,
    isolated: bool,
}

/// The variables that configure ranq; an isolated launch inherits none of them.
fn configures_ranq(name: &str) -> bool {
    name.starts_with("RANQ_") || name == "DATABASE_URL" || name == "REDIS_URL"
}

impl Launcher {
    /// Roles of `exe` on `redis_url` and `namespace` (and the source at `database_url`, for the
    /// roles that read it). Other `RANQ_*` settings are inherited from this process, so a
    /// variable such as `RANQ_WORKER__BATCH_SIZE` tunes every role launched, unless
    /// [`Launcher::isolated`].
    pub fn new(exe: impl Into<PathBuf>, database_url: Option<&str>, redis_url: &str, namespace: &str) -> Self {
        let mut vars = BTreeMap::new();
        if let Some(url) = database_url {
            vars.insert("DATABASE_URL".to_owned(), url.to_owned());
        }
        vars.insert("REDIS_URL".to_owned(), redis_url.to_owned());
        vars.insert("RANQ_NAMESPACE".to_owned(), namespace.to_owned());
        Self { exe: exe.into(), vars, isolated: false }
    }

    /// The same roles' environment for another program (a benchmark's own helper processes).
    pub fn with_exe(mut self, exe: impl Into<PathBuf>) -> Self {
        self.exe = exe.into();
        self
    }

    /// One more variable for every role.
    pub fn var(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.insert(name.to_owned(), value.into());
        self
    }

    /// Inherit no ranq setting from this process's environment: only what is set here.
    pub fn isolated(mut self) -> Self {
        self.isolated = true;
        self
    }

    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// `<exe> <args>` with the roles' environment and no stdin; the caller decides where its
    /// output goes.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.exe);
        if self.isolated {
            for (name, _) in std::env::vars_os() {
                if name.to_str().is_some_and(configures_ranq) {
                    command.env_remove(name);
                }
            }
        }
        command.args(args).envs(&self.vars).stdin(Stdio::null());
        command
    }

    /// [`Launcher::command`] as a tokio command, killed if its handle is dropped.
    pub fn tokio_command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::from(self.command(args));
        command.kill_on_drop(true);
        command
    }
}

/// Sends `signal` to a child, if it still runs.
fn signal(child: &tokio::process::Child, signal: Signal) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// SIGTERM to every child at once, then waits for each; one still running `grace` after the
/// signal is killed. Returns the indices of the children that had to be killed.
pub async fn stop_all(children: &mut [tokio::process::Child], grace: Duration) -> Vec<usize> {
    for child in children.iter() {
        signal(child, Signal::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + grace;
    let mut killed = Vec::new();
    for (i, child) in children.iter_mut().enumerate() {
        if tokio::time::timeout_at(deadline, child.wait()).await.is_err() {
            let _ = child.kill().await;
            killed.push(i);
        }
    }
    killed
}

/// A `redis-server` of the caller's own on a free loopback port, keeping nothing on disk. It can
/// be killed and started again empty; dropping it kills it.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// Keep the server's output for the caller instead of discarding it.
    piped: bool,
    /// Arguments beyond the port and the empty persistence.
    extra: Vec<String>,
}

/// Longest wait for a started server to accept connections.
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(10);

impl RedisServer {
    /// Starts `redis-server` from PATH, its output discarded, and waits until it accepts.
    pub fn start() -> io::Result<Self> {
        Self::launch_new(false)
    }

    /// [`RedisServer::start`], keeping the server's output for [`RedisServer::take_output`].
    pub fn start_piped() -> io::Result<Self> {
        Self::launch_new(true)
    }

    fn launch_new(piped: bool) -> io::Result<Self> {
        Self::launch_on(free_port()?, piped, Vec::new())
    }

    fn launch_on(port: u16, piped: bool, extra: Vec<String>) -> io::Result<Self> {
        let mut server = Self { port, child: None, piped, extra };
        server.launch()?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) -> io::Result<()> {
        let output = if self.piped { Stdio::piped() } else { Stdio::null() };
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--loglevel", "warning"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(output)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start redis-server (is it installed?): {e}")))?;
        self.child = Some(child);
        let deadline = Instant::now() + REDIS_START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline || self.has_exited() {
                self.kill();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis-server did not start on port {} within {REDIS_START_TIMEOUT:?}", self.port),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The server's output, once, when it was started piped.
    pub fn take_output(&mut self) -> Option<ChildStdout> {
        self.child.as_mut().and_then(|c| c.stdout.take())
    }

    /// Whether the server has stopped by itself (or was killed).
    pub fn has_exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// Starts the server again on the same port, empty (nothing was saved).
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.child.is_none() {
            self.launch()?;
        }
        Ok(())
    }

    /// Kills the server: SIGKILL, nothing saved; clients see their connections drop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The highest port a cluster node may take: Redis adds 10,000 for the node's bus port, and
/// refuses a node port whose bus port would not fit.
const CLUSTER_PORT_MAX: u16 = 55_535;

/// A free port for a cluster node whose bus port (10,000 above) is free too.
fn cluster_port() -> io::Result<u16> {
    for _ in 0..1_000 {
        let port = free_port()?;
        if port <= CLUSTER_PORT_MAX && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::other(format!("no free port at or below {CLUSTER_PORT_MAX} with its bus port free")))
}

/// How long a new cluster may take to agree on its layout.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A Redis Cluster of the caller's own: three masters and a replica of each, `redis-server`s on
/// free loopback ports joined by `redis-cli --cluster create`, keeping nothing on disk but each
/// node's cluster file (in a directory removed with the cluster). A node can be killed and
/// started again; dropping the cluster kills every node.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts six nodes, joins them (the first three become masters) and waits until every node
    /// reports `cluster_state:ok`.
    pub fn start() -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("ranq-cluster-{}-{}", std::process::id(), free_port()?));
        std::fs::create_dir_all(&dir)?;
        let mut cluster = Self { nodes: Vec::new(), dir };
        for _ in 0..6 {
            let port = cluster_port()?;
            let extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{port}.conf"),
                "--cluster-node-timeout",
                "2000",
                "--dir",
                &cluster.dir.display().to_string(),
            ];
            cluster.nodes.push(RedisServer::launch_on(port, false, extra.iter().map(|s| (*s).to_owned()).collect())?);
        }
        let addresses: Vec<String> = cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let create = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run redis-cli (is it installed?): {e}")))?;
        if !create.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&create.stdout).lines().last().unwrap_or_default()
            )));
        }
        cluster.wait_until_ok()?;
        Ok(cluster)
    }

    /// Waits until every live node says `cluster_state:ok`.
    pub fn wait_until_ok(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
        loop {
            let mut ok = true;
            for node in self.nodes.iter_mut().filter(|n| n.child.is_some()) {
                ok &= Self::cli(node.port, &["CLUSTER", "INFO"])?.contains("cluster_state:ok");
            }
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!("the cluster was not ok within {CLUSTER_READY_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What `redis-cli -p <port> <args>` prints.
    pub fn cli(port: u16, args: &[&str]) -> io::Result<String> {
        let out = Command::new("redis-cli").args(["-h", "127.0.0.1", "-p", &port.to_string()]).args(args).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A URL that reaches the cluster through every node.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// Every node's port, masters as created first.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// `(master, replica)` ports, one pair per master that has a live replica, as the cluster
    /// says now (`CLUSTER NODES` on a live node).
    pub fn pairs(&mut self) -> io::Result<Vec<(u16, u16)>> {
        let live = self.nodes.iter_mut().filter_map(|n| (!n.has_exited()).then_some(n.port)).next();
        let text = Self::cli(
            live.ok_or_else(|| io::Error::other("no node of the cluster is running"))?,
            &["CLUSTER", "NODES"],
        )?;
        // <id> <ip:port@cport> <flags> <master id or -> …
        let nodes: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
        let port_of = |n: &[&str]| n.get(1)?.split('@').next()?.rsplit(':').next()?.parse::<u16>().ok();
        let mut pairs = Vec::new();
        for replica in nodes.iter().filter(|n| n.get(2).is_some_and(|f| f.contains("slave") && !f.contains("fail"))) {
            let master = nodes.iter().find(|n| n.first() == replica.get(3));
            if let (Some(m), Some(r)) = (master.and_then(|m| port_of(m)), port_of(replica)) {
                pairs.push((m, r));
            }
        }
        Ok(pairs)
    }

    /// Whether the node on `port` is a master now (`ROLE`).
    pub fn is_master(port: u16) -> bool {
        Self::cli(port, &["ROLE"]).is_ok_and(|out| out.lines().next() == Some("master"))
    }

    /// Kills the node on `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        self.nodes.iter_mut().filter(|n| n.port == port).for_each(RedisServer::kill);
    }

    /// Starts the node on `port` again after [`RedisCluster::kill`]: empty, but with the cluster's
    /// layout it kept in its file, so that it rejoins, as a replica if another took its slots.
    pub fn start_again(&mut self, port: u16) -> io::Result<()> {
        self.nodes.iter_mut().filter(|n| n.port == port).try_for_each(RedisServer::start_again)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.iter_mut().for_each(RedisServer::kill);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
