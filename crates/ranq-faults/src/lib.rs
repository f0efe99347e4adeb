//! `ranq-faults`: faults on demand, for the reliability tests and `ranq bench chaos`, without
//! disturbing anything outside them:
//!
//! * [`FaultProxy`] — a TCP proxy in front of a service (Postgres) that can be cut (every open
//!   connection closed, new ones closed at once) and repaired;
//! * [`PrivateRedis`] — a `redis-server` of the caller's own on a free port, which can be killed
//!   and started again empty.
//!
//! Architecture Invariant: nothing in the production path depends on this crate.

use std::io;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A TCP proxy whose link can be cut.
#[derive(Debug)]
pub struct FaultProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = tokio::spawn({
            let (cut, links) = (cut.clone(), links.clone());
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        // Refused: closed at once, before a byte of the protocol.
                        drop(inbound);
                        continue;
                    }
                    let link = tokio::spawn(async move {
                        let mut inbound = inbound;
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    let mut links = links.lock().unwrap_or_else(PoisonError::into_inner);
                    links.retain(|l| !l.is_finished());
                    // A cut that came between the accept and here has drained the list already.
                    if cut.load(Ordering::SeqCst) {
                        link.abort();
                    } else {
                        links.push(link.abort_handle());
                    }
                }
            }
        })
        .abort_handle();
        Ok(Self { port, cut, links, accept })
    }

    /// `url` with its host and port replaced by this proxy's (`None` if it is not a URL).
    pub fn wrap(&self, url: &str) -> Option<String> {
        let mut url = url::Url::parse(url).ok()?;
        url.set_host(Some("127.0.0.1")).ok()?;
        url.set_port(Some(self.port)).ok()?;
        Some(url.to_string())
    }

    /// Closes every open connection, and every new one at once, until [`repair`](Self::repair).
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            link.abort();
        }
    }

    pub fn repair(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// A `redis-server` of the caller's own, keeping nothing on disk.
#[derive(Debug)]
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts `redis-server` from PATH on a free port and waits (up to 10 s) until it accepts.
    pub fn start() -> io::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut redis = Self { port, child: None };
        redis.launch()?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) -> io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start redis-server (is it installed?): {e}")))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis-server did not start on port {}", self.port),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
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

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
