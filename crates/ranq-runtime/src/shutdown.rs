//! Graceful shutdown as a value. A [`Shutdown`] is cloned into every long-running task; the signal
//! handler (or a test, or a supervisor) cancels it, and each task drains and returns.

use tokio_util::sync::CancellationToken;

/// A cloneable shutdown handle; cancelling any clone stops them all.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder to stop.
    pub fn trigger(&self) {
        self.0.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once shutdown has been asked for.
    pub async fn wait(&self) {
        self.0.cancelled().await;
    }

    /// Cancels this handle when the process receives SIGTERM or SIGINT (Ctrl-C).
    pub fn trigger_on_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = os_signal() => {
                    tracing::info!("shutdown signal received; draining");
                    this.trigger();
                }
                () = this.wait() => {}
            }
        });
    }
}

/// Resolves when the process receives SIGTERM or SIGINT; for commands that just stop, with
/// nothing to drain.
pub async fn signalled() {
    os_signal().await;
}

#[cfg(unix)]
async fn os_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn os_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
