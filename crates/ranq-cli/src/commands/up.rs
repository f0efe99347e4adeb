//! `ranq up`: a whole fleet on one machine, for trying ranq and for demos.
//!
//! It prepares the source (migrate; seed when empty; embedded SQLite when no DATABASE_URL), finds
//! or starts Redis, then runs producer, workers and the read API as child processes of the same
//! binary — the same processes a deployment runs — and stops them all on Ctrl-C or SIGTERM.

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

    let mut children = Vec::new();
    let redis_url = match ensure_redis(&ctx.settings.redis_url).await? {
        Redis::Running(url) => url,
        Redis::Started(url, child) => {
            children.push(("redis-server".to_owned(), child));
            url
        }
    };

    let exe = std::env::current_exe()?;
    let spawn =
        |role: &str, extra: &[&str]| spawn_role(&exe, role, extra, &database_url, &redis_url, &ctx.settings.namespace);
    children.push(("producer".into(), spawn("producer", &["--schedule", &args.schedule])?));
    for i in 1..=args.workers {
        children.push((format!("worker-{i}"), spawn("worker", &[])?));
    }
    children.push(("serve".into(), spawn("serve", &["--listen", &args.listen])?));

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
        .stdin(Stdio::null())
        .stdout(Stdio::null())
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

fn spawn_role(
    exe: &PathBuf,
    role: &str,
    extra: &[&str],
    database_url: &str,
    redis_url: &str,
    namespace: &str,
) -> anyhow::Result<Child> {
    Command::new(exe)
        .arg(role)
        .args(extra)
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url)
        .env("RANQ_NAMESPACE", namespace)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start `ranq {role}`: {e}"))
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
