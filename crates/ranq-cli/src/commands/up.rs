//! `ranq up`: a whole fleet on one machine, for trying ranq and for demos.
//!
//! It prepares the source (migrate; seed when empty; embedded SQLite when no DATABASE_URL), finds
//! or starts Redis, then runs producer, workers and the read API as child processes of the same
//! binary — the same processes a deployment runs — and stops them all on Ctrl-C or SIGTERM.
//!
//! Every child's output is read line by line and printed with its role as a coloured prefix
//! (`worker-2 | …`), as foreman and docker compose do, so one terminal shows the whole fleet.

use std::io::IsTerminal;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ranq_core::job::Reason;
use ranq_core::{Keys, RefreshJob};
use ranq_db::{SeedOptions, Source};
use ranq_queue::{Queue, QueueOptions};
use ranq_runtime::Shutdown;
use tokio::process::{Child, Command};

use crate::cli::UpArgs;
use crate::context::Context;

/// The SQLite file `ranq up` uses when DATABASE_URL is not set (CONTRACT §1).
const DEMO_DATABASE: &str = "sqlite:ranq-demo.db";

pub async fn up(ctx: &Context, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let database_url = ctx.settings.database_url.clone().unwrap_or_else(|| DEMO_DATABASE.to_owned());
    prepare_source(&database_url, args).await?;

    let roles: Vec<String> = ["redis-server".into(), "producer".into()]
        .into_iter()
        .chain((1..=args.workers).map(|i| format!("worker-{i}")))
        .chain(["serve".into()])
        .collect();
    let printer = Printer::new(&roles);
    let mut children = Vec::new();
    let mut pipes = Vec::new();
    let redis_url = match ensure_redis(&ctx.settings.redis_url).await? {
        Redis::Running(url) => url,
        Redis::Started(url, mut child) => {
            pipes.extend(printer.forward("redis-server", &mut child));
            children.push(("redis-server".to_owned(), child));
            url
        }
    };

    let exe = std::env::current_exe()?;
    // Children log text (unless JSON was asked for), coloured when this terminal is.
    let log_format = match ctx.settings.log_format {
        Some(ranq_runtime::LogFormat::Json) => "json",
        _ => "text",
    };
    let fleet = Fleet {
        exe: &exe,
        database_url: &database_url,
        redis_url: &redis_url,
        namespace: &ctx.settings.namespace,
        log_format,
        colour: printer.colour,
    };
    let mut spawn = |role: String, command: &str, extra: &[&str]| -> anyhow::Result<()> {
        let mut child = fleet.spawn(command, extra)?;
        pipes.extend(printer.forward(&role, &mut child));
        children.push((role, child));
        Ok(())
    };
    spawn("producer".into(), "producer", &["--schedule", &args.schedule])?;
    for i in 1..=args.workers {
        spawn(format!("worker-{i}"), "worker", &[])?;
    }
    spawn("serve".into(), "serve", &["--listen", &args.listen])?;

    // Fill the cache now rather than at the first tick.
    let source = Source::connect(&database_url, 1).await?;
    let groups = source.group_ids().await?;
    source.close().await;
    let conn = ranq_cache::connect(&redis_url).await?;
    let queue = Queue::new(conn, &Keys::new(ctx.settings.namespace.clone()), &QueueOptions::default());
    let jobs: Vec<RefreshJob> = groups.iter().map(|&g| RefreshJob::new(g, Reason::Manual)).collect();
    let p = &ctx.settings.producer;
    queue.enqueue(&jobs, p.enqueue_chunk, p.max_backlog, p.backlog_wait).await?;

    eprintln!();
    eprintln!("ranq is up: {} groups from {}", groups.len(), ranq_core::redact_url(&database_url));
    eprintln!("  web board    http://{}/?group=1   (operations: http://{}/ops)", args.listen, args.listen);
    eprintln!("  leaderboard  http://{}/v1/groups/1/top", args.listen);
    eprintln!("  metrics      http://{}/metrics", args.listen);
    eprintln!(
        "  fleet status ranq status --redis-url {} --namespace {}",
        ranq_core::redact_url(&redis_url),
        ctx.settings.namespace
    );
    eprintln!("Press Ctrl-C to stop.");
    eprintln!();

    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let exited = supervise(&mut children, &shutdown).await;
    stop_all(&mut children, ctx.settings.shutdown_timeout).await;
    // The children are gone, so their pipes close; print what they said last.
    let _ = tokio::time::timeout(Duration::from_secs(2), futures::future::join_all(pipes)).await;
    match exited {
        Some(role) => anyhow::bail!("{role} exited unexpectedly; stopped the fleet (see its log lines above)"),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Migrates, and seeds the demo data set when the source has no groups.
async fn prepare_source(url: &str, args: &UpArgs) -> anyhow::Result<()> {
    let source = Source::connect(url, 2).await?;
    source.migrate().await?;
    if source.count_groups().await? == 0 {
        let options = SeedOptions { groups: args.groups, members: args.members, seed: 42, replace: false };
        let report = super::admin::seed_with_progress(&source, options).await?;
        eprintln!("seeded {} demo groups ({} rows)", report.groups, report.rows);
    }
    source.close().await;
    Ok(())
}

enum Redis {
    Running(String),
    Started(String, Child),
}

/// Uses the Redis at `url` if it answers; otherwise starts `redis-server` from PATH on a free
/// port (stopped with the fleet); otherwise explains how to install it.
async fn ensure_redis(url: &str) -> anyhow::Result<Redis> {
    if redis_answers(url).await {
        return Ok(Redis::Running(url.to_owned()));
    }
    let Some(server) = find_in_path("redis-server") else {
        anyhow::bail!(
            "no Redis answers at {} and redis-server is not installed: install it (Debian/Ubuntu: `sudo apt-get install redis-server`, macOS: `brew install redis`) or set REDIS_URL",
            ranq_core::redact_url(url)
        );
    };
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(server)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--loglevel", "warning"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let local = format!("redis://127.0.0.1:{port}");
    for _ in 0..50 {
        if redis_answers(&local).await {
            eprintln!("started redis-server on port {port} (no Redis answered at {})", ranq_core::redact_url(url));
            return Ok(Redis::Started(local, child));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("started redis-server on port {port}, but it did not answer within 5s")
}

async fn redis_answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else { return false };
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING").query_async::<String>(&mut conn).await.ok()
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), ping).await, Ok(Some(_)))
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// What every child of the fleet is started with.
struct Fleet<'a> {
    exe: &'a PathBuf,
    database_url: &'a str,
    redis_url: &'a str,
    namespace: &'a str,
    log_format: &'a str,
    colour: bool,
}

impl Fleet<'_> {
    fn spawn(&self, command: &str, extra: &[&str]) -> anyhow::Result<Child> {
        let mut cmd = Command::new(self.exe);
        cmd.arg(command)
            .args(extra)
            .env("DATABASE_URL", self.database_url)
            .env("REDIS_URL", self.redis_url)
            .env("RANQ_NAMESPACE", self.namespace)
            .env("RANQ_LOG_FORMAT", self.log_format);
        if self.colour {
            cmd.env("CLICOLOR_FORCE", "1").env_remove("NO_COLOR");
        } else {
            cmd.env("NO_COLOR", "1");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start `ranq {command}`: {e}"))
    }
}

/// Prints children's lines to stderr behind a prefix naming their role, aligned, and coloured
/// per role when stderr is a terminal (or CLICOLOR_FORCE is set, and NO_COLOR is not).
#[derive(Clone)]
struct Printer {
    width: usize,
    colour: bool,
    roles: Vec<String>,
}

/// Role colours, in the order roles are listed; they repeat for many workers.
const PALETTE: &[anstyle::AnsiColor] = &[
    anstyle::AnsiColor::Red,
    anstyle::AnsiColor::Cyan,
    anstyle::AnsiColor::Green,
    anstyle::AnsiColor::Yellow,
    anstyle::AnsiColor::Blue,
    anstyle::AnsiColor::Magenta,
];

impl Printer {
    fn new(roles: &[String]) -> Self {
        let colour = ranq_runtime::telemetry::colour(std::io::stderr().is_terminal());
        Self { width: roles.iter().map(String::len).max().unwrap_or(0), colour, roles: roles.to_vec() }
    }

    fn prefix(&self, role: &str) -> String {
        let padded = format!("{role:<width$} |", width = self.width);
        if !self.colour {
            return padded;
        }
        let i = self.roles.iter().position(|r| r == role).unwrap_or(0);
        let style = anstyle::Style::new().fg_color(Some(PALETTE[i % PALETTE.len()].into())).bold();
        format!("{style}{padded}{style:#}")
    }

    /// Takes the child's stdout and stderr and prints each line as it comes; the tasks end when
    /// the child closes them (at the latest when it exits).
    fn forward(&self, role: &str, child: &mut Child) -> Vec<tokio::task::JoinHandle<()>> {
        let prefix = self.prefix(role);
        let mut tasks = Vec::new();
        if let Some(out) = child.stdout.take() {
            tasks.push(tokio::spawn(print_lines(prefix.clone(), out)));
        }
        if let Some(err) = child.stderr.take() {
            tasks.push(tokio::spawn(print_lines(prefix, err)));
        }
        tasks
    }
}

/// Copies lines until the stream ends. It keeps reading whatever happens to our own stderr, and
/// takes bytes that are not UTF-8 as they are, so a child can never block on a full pipe.
async fn print_lines(prefix: String, stream: impl tokio::io::AsyncRead + Unpin) {
    use std::io::Write;
    use tokio::io::AsyncBufReadExt;
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let _ = writeln!(std::io::stderr().lock(), "{prefix} {}", text.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

/// Waits for shutdown, or for a child to exit on its own (returns its role).
async fn supervise(children: &mut [(String, Child)], shutdown: &Shutdown) -> Option<String> {
    loop {
        for (role, child) in children.iter_mut() {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(role.clone());
            }
        }
        tokio::select! {
            () = shutdown.wait() => return None,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// SIGTERM to every child, then SIGKILL to whoever has not exited within `grace`.
async fn stop_all(children: &mut [(String, Child)], grace: Duration) {
    for (_, child) in children.iter() {
        if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    for (role, child) in children.iter_mut() {
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            eprintln!("{role} did not stop within {}; killing it", humantime::format_duration(grace));
            let _ = child.kill().await;
        }
    }
}
