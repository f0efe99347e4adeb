//! `ranq-faults`: faults on demand, for the reliability tests and `ranq-bench chaos`, without
//! disturbing anything outside them: [`FaultProxy`], a TCP proxy in front of a service (Postgres)
//! that can be cut (every open connection closed, new ones closed at once) and repaired; and
//! [`sentinel::Sentinels`], a Redis Sentinel deployment that fails over on demand. (A Redis to
//! kill and restart empty is `ranq_launch::RedisServer`.)
//!
//! Architecture Invariant: nothing in the production path depends on this crate; a test over
//! `cargo metadata` holds the `ranq` binary to it.

pub mod sentinel;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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
