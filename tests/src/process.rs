//! Real `ranq` processes for tests: the binary is built once per test run, and every process is
//! killed when its handle drops, so a failing test never leaves a fleet running.

use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The directory of freshly built `ranq` and `ranq-bench` binaries (built once per test run,
/// with the same profile as the tests).
fn binaries() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--quiet", "-p", "ranq-cli", "-p", "ranq-bench", "--bins"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the ranq binaries failed");
        let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
        target.join("debug")
    })
}

/// Path of the freshly built `ranq` binary.
pub fn ranq_bin() -> PathBuf {
    binaries().join("ranq")
}

/// Path of the freshly built `ranq-bench` binary.
pub fn bench_bin() -> PathBuf {
    binaries().join("ranq-bench")
}

/// A running `ranq` process.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: std::process::Command) -> Self {
        let child = cmd.stdin(std::process::Stdio::null()).spawn().expect("ranq starts");
        Self { name: name.to_owned(), child }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"))
    }

    /// Sends SIGTERM and waits (up to `timeout`) for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.stop_with(Signal::SIGTERM, timeout)
    }

    /// Sends `signal` (SIGINT is Ctrl-C) and waits (up to `timeout`) for the exit status.
    pub fn stop_with(&mut self, signal: Signal, timeout: Duration) -> ExitStatus {
        kill(self.pid(), signal).expect("signal delivered");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit within {timeout:?} of {signal}", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGINT (Ctrl-C), waits up to `timeout`, and returns the exit code with everything
    /// the process printed on stdout (which the caller piped).
    pub fn interrupt_and_collect(mut self, timeout: Duration) -> (Option<i32>, String) {
        use std::io::Read;
        let status = self.stop_with(Signal::SIGINT, timeout);
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            stdout.read_to_string(&mut out).expect("stdout is readable");
        }
        (status.code(), out)
    }

    /// Reaps a process that was killed by a signal (so it leaves no zombie), returning its status.
    pub fn terminate_killed(&mut self) -> ExitStatus {
        self.child.wait().expect("wait works")
    }

    /// Closes the reading end of the process's piped stdout and stderr, as a supervisor that
    /// died would: its next write gets a broken pipe.
    pub fn close_output(&mut self) {
        drop(self.child.stdout.take());
        drop(self.child.stderr.take());
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
