//! `ranq-faults`: faults on demand, for the reliability tests and `ranq-bench chaos`, without
//! disturbing anything outside them: [`FaultProxy`], a TCP proxy in front of a service (Postgres)
//! that can be cut (every open connection closed, new ones closed at once) and repaired, or that
//! adds a fixed latency to every byte in each direction (a service across a network); and
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

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio::time::Instant;

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
        Self::with_latency(upstream, Duration::ZERO).await
    }

    /// As [`start`](Self::start), every chunk of bytes delivered `latency` after it arrived, in
    /// each direction: a round trip costs twice `latency` more, and throughput is not limited.
    pub async fn with_latency(upstream: SocketAddr, latency: Duration) -> io::Result<Self> {
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
                            if latency.is_zero() {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            } else {
                                let _ = inbound.set_nodelay(true);
                                let _ = outbound.set_nodelay(true);
                                let (in_read, in_write) = inbound.into_split();
                                let (out_read, out_write) = outbound.into_split();
                                tokio::join!(
                                    delayed(in_read, out_write, latency),
                                    delayed(out_read, in_write, latency)
                                );
                            }
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

/// Chunks of bytes in flight on one direction of a delayed link.
const DELAY_LINE: usize = 1024;

/// Copies `from` to `to`, each chunk held back until `latency` after it was read. The reader
/// never waits on the writer's sleeps, so the link has latency, not a lower throughput.
async fn delayed(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, latency: Duration) {
    let (line, mut arriving) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(DELAY_LINE);
    let read = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buffer).await {
            if line.send((Instant::now() + latency, buffer[..n].to_vec())).await.is_err() {
                break;
            }
        }
    };
    let write = async move {
        while let Some((due, bytes)) = arriving.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
