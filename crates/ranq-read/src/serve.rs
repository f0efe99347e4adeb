//! The accept loop of both listeners. axum's own `serve` has no bound on how long a client may
//! take to send its headers, so a slowloris (a client that opens connections and trickles bytes,
//! or sends nothing) would hold them forever; this loop is hyper's server with the bounds a
//! public port needs:
//!
//! - a client has `read.header_timeout` from connecting to send its first bytes — enough to tell
//!   HTTP/1 from HTTP/2, whose preface hyper would otherwise wait for without a timer
//!   ([`Opening`]) — and for HTTP/1 the same to send each request's headers, and to send the
//!   next one on a kept-alive connection; else it is disconnected;
//! - an HTTP/2 connection is pinged every `read.header_timeout` and closed when a ping goes
//!   unanswered as long (one that answers pings stays, within `read.max_connections`);
//! - at most `read.max_connections` connections are open at once (past it, new ones wait in the
//!   kernel's backlog rather than take memory here);
//! - on shutdown it stops accepting, lets requests in flight finish, and closes what is left
//!   after the drain bound.
//!
//! Each request carries its peer's address (`ConnectInfo`), which the per-client rate limit keys on.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use ranq_runtime::Shutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tower::ServiceExt as _;

/// How long to wait before accepting again after `accept` failed (out of file descriptors, say).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The bounds one listener holds its clients to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// How long requests in flight may take to finish after shutdown.
    pub drain: Duration,
}

/// Serves `router` on `listener` until `shutdown`, then drains.
pub(crate) async fn serve(listener: TcpListener, router: Router, limits: Limits, shutdown: Shutdown) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        // Reap the finished ones, so the set holds only open connections.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed
            },
            () = shutdown.wait() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed; trying again shortly");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        // Answers are small and sent whole: do not hold them back for Nagle.
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(move |mut request: axum::extract::Request<_>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            request
        });
        let stream = Opening::new(stream, limits.header_timeout);
        let connection =
            builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection.into_owned());
        connections.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(after = ?limits.drain, open = connections.len(), "connections still open after the drain; closing them");
    }
    connections.shutdown().await;
}

/// What a client must send within `read.header_timeout` of connecting: the length of HTTP/2's
/// preface, past which hyper knows the protocol and its own timers take over.
const OPENING_BYTES: usize = 24;

/// A connection whose first [`OPENING_BYTES`] must arrive before a deadline; after them it is the
/// stream itself. A read past the deadline fails, which closes the connection.
struct Opening<S> {
    inner: S,
    read: usize,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Opening<S> {
    fn new(inner: S, within: Duration) -> Self {
        Self { inner, read: 0, deadline: Some(Box::pin(tokio::time::sleep(within))) }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Opening<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no request within read.header_timeout")));
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if poll.is_ready() {
            this.read += buf.filled().len() - before;
            if this.read >= OPENING_BYTES {
                this.deadline = None;
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Opening<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
