//! `ranq up`: a whole fleet on one machine, for trying ranq and for demos.
//!
//! It prepares the source (migrate; seed when empty; embedded SQLite when no DATABASE_URL), finds
//! or starts Redis, then runs producer, workers and the read API as child processes of the same
//! binary — the same processes a deployment runs — and stops them all on Ctrl-C or SIGTERM.
//!
//! Every child's output is read line by line and printed with its role as a coloured prefix
//! (`worker-2 | …`), as foreman and docker compose do, so one terminal shows the whole fleet.

use std::io::IsTerminal;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use ranq_cache::Cache;
use ranq_core::{Keys, Reason, RefreshJob};
use ranq_db::{SeedOptions, Source};
use ranq_launch::{Launcher, RedisCluster, RedisServer};
use ranq_queue::{Backpressure, Queue};
use ranq_runtime::Shutdown;
use tokio::process::Child;

use crate::cli::UpArgs;
use crate::context::Context;

/// The SQLite file `ranq up` uses when DATABASE_URL is not set.
const DEMO_DATABASE: &str = "sqlite:ranq-demo.db";
/// The role the private redis-server's lines are printed under.
const REDIS_ROLE: &str = "redis-server";

pub async fn up(ctx: &Context, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let database_url = ctx.settings.database_url.clone().unwrap_or_else(|| DEMO_DATABASE.to_owned());
    prepare_source(&database_url, args).await?;

    let roles: Vec<String> = [REDIS_ROLE.into(), "producer".into()]
        .into_iter()
        .chain((1..=args.workers).map(|i| format!("worker-{i}")))
        .chain(["serve".into()])
        .collect();
    let mut fleet =
        LocalFleet { printer: Printer::new(&roles), children: Vec::new(), names: Vec::new(), pipes: Vec::new() };
    let mut private_cluster = None;
    let (redis_url, mut private_redis) = if args.redis_cluster {
        let cluster = start_cluster().await?;
        let url = cluster.url();
        private_cluster = Some(cluster);
        (url, None)
    } else {
        match ensure_redis(&ctx.settings.redis_url, &ctx.settings).await? {
            Some(mut server) => {
                if let Some(output) = server.take_output().and_then(|o| tokio::process::ChildStdout::from_std(o).ok()) {
                    fleet.pipes.push(tokio::spawn(print_lines(fleet.printer.prefix(REDIS_ROLE), output)));
                }
                (server.url(), Some(server))
            }
            None => (ctx.settings.redis_url.clone(), None),
        }
    };

    let launcher = fleet.launcher(ctx, &database_url, &redis_url)?;
    let (listen, admin) = (&ctx.settings.read.listen, &ctx.settings.read.admin_listen);
    fleet.spawn(&launcher, "producer".into(), &["producer", "--schedule", &args.schedule])?;
    for i in 1..=args.workers {
        fleet.spawn(&launcher, format!("worker-{i}"), &["worker"])?;
    }
    fleet.spawn(&launcher, "serve".into(), &["serve", "--listen", listen, "--admin-listen", admin])?;

    let groups = fill_cache(ctx, &database_url, &redis_url).await?;
    print_banner(groups, &database_url, &redis_url, (listen, admin), &ctx.settings.namespace);

    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let exited = supervise(&mut fleet.children, &fleet.names, private_redis.as_mut(), &shutdown).await;
    let grace = ctx.settings.shutdown_timeout;
    for i in ranq_launch::stop_all(&mut fleet.children, grace).await {
        eprintln!("{} did not stop within {}; killed it", fleet.names[i], humantime::format_duration(grace));
    }
    // Redis last: the roles drain into it.
    drop(private_redis);
    drop(private_cluster);
    // The children are gone, so their pipes close; print what they said last.
    let _ = tokio::time::timeout(Duration::from_secs(2), futures::future::join_all(fleet.pipes)).await;
    match exited {
        Some(role) => anyhow::bail!("{role} exited unexpectedly; stopped the fleet (see its log lines above)"),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The roles `up` runs, with the tasks printing their output.
struct LocalFleet {
    printer: Printer,
    children: Vec<Child>,
    /// The role of each child, in the same order.
    names: Vec<String>,
    pipes: Vec<tokio::task::JoinHandle<()>>,
}

impl LocalFleet {
    /// This binary's roles on the fleet's database, Redis and namespace. They log text (unless
    /// JSON was asked for), coloured when this terminal is.
    fn launcher(&self, ctx: &Context, database_url: &str, redis_url: &str) -> anyhow::Result<Launcher> {
        let log_format = match ctx.settings.log_format {
            Some(ranq_runtime::LogFormat::Json) => "json",
            _ => "text",
        };
        let launcher = Launcher::new(std::env::current_exe()?, Some(database_url), redis_url, &ctx.settings.namespace)
            .var("RANQ_LOG_FORMAT", log_format);
        Ok(if self.printer.colour {
            launcher.var("CLICOLOR_FORCE", "1").var("NO_COLOR", "")
        } else {
            launcher.var("NO_COLOR", "1")
        })
    }

    /// Starts `ranq <args>` as `role`, its output printed behind the role's prefix.
    fn spawn(&mut self, launcher: &Launcher, role: String, args: &[&str]) -> anyhow::Result<()> {
        let mut child = launcher
            .tokio_command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start `ranq {}`: {e}", args.join(" ")))?;
        self.pipes.extend(self.printer.forward(&role, &mut child));
        self.children.push(child);
        self.names.push(role);
        Ok(())
    }
}

/// Where the user finds what just started.
fn print_banner(groups: usize, database_url: &str, redis_url: &str, (listen, admin): (&str, &str), namespace: &str) {
    eprintln!();
    eprintln!("ranq is up: {groups} groups from {}", ranq_core::redact_url(database_url));
    eprintln!("  web board    http://{listen}/?group=1");
    eprintln!("  leaderboard  http://{listen}/v1/groups/1/top");
    eprintln!("  operations   http://{admin}/ops   (admin listener: also /v1/status, /metrics)");
    eprintln!("  metrics      http://{admin}/metrics");
    eprintln!("  fleet status ranq status --redis-url {} --namespace {namespace}", ranq_core::redact_url(redis_url));
    eprintln!("Press Ctrl-C to stop.");
    eprintln!();
}

/// Enqueues every group now rather than at the first tick; returns how many there are.
async fn fill_cache(ctx: &Context, database_url: &str, redis_url: &str) -> anyhow::Result<usize> {
    let source = Source::connect(database_url, 1).await?;
    let groups = source.group_ids().await?;
    source.close().await;
    let redis = crate::context::connect_redis(redis_url, &ctx.settings).await?;
    let cache = Cache::new(redis, Keys::new(ctx.settings.namespace.clone()));
    let queue = Queue::new(cache.redis(), cache.keys(), &ctx.settings.worker);
    let jobs: Vec<RefreshJob> = groups.iter().map(|&g| RefreshJob::new(g, Reason::Manual)).collect();
    queue.enqueue(&jobs, &Backpressure::of(&ctx.settings.producer)).await?;
    Ok(groups.len())
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

/// `None` when a Redis answers at `url`; otherwise a `redis-server` from PATH started on a free
/// port (stopped with the fleet); otherwise an error that says how to install it.
async fn ensure_redis(url: &str, settings: &ranq_runtime::Settings) -> anyhow::Result<Option<RedisServer>> {
    if ranq_redis::answers(url, &settings.redis).await {
        return Ok(None);
    }
    // Starting waits (boundedly) for the server to accept: off the async threads.
    let started = tokio::task::spawn_blocking(RedisServer::start_piped).await?;
    let server = started.map_err(|e| {
        anyhow::anyhow!(
            "no Redis answers at {} and redis-server could not be started ({e}): install it (Debian/Ubuntu: `sudo apt-get install redis-server`, macOS: `brew install redis`) or set REDIS_URL",
            ranq_core::redact_url(url)
        )
    })?;
    eprintln!("started redis-server on port {} (no Redis answered at {})", server.port(), ranq_core::redact_url(url));
    Ok(Some(server))
}

/// A Redis Cluster of the fleet's own, for `--redis-cluster`.
async fn start_cluster() -> anyhow::Result<RedisCluster> {
    // Starting waits (boundedly) for the nodes to agree: off the async threads.
    let cluster = tokio::task::spawn_blocking(RedisCluster::start).await?.map_err(|e| {
        anyhow::anyhow!(
            "could not start a local Redis Cluster ({e}): install redis-server and redis-cli (Debian/Ubuntu: `sudo apt-get install redis-server`, macOS: `brew install redis`)"
        )
    })?;
    eprintln!("started a Redis Cluster of six nodes on ports {:?} (the first three masters)", cluster.ports());
    Ok(cluster)
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

/// Waits for shutdown, or for a child (or the private redis-server) to exit on its own; returns
/// the role that exited.
async fn supervise(
    children: &mut [Child],
    names: &[String],
    mut redis: Option<&mut RedisServer>,
    shutdown: &Shutdown,
) -> Option<String> {
    loop {
        if let Some(i) = children.iter_mut().position(|child| matches!(child.try_wait(), Ok(Some(_)))) {
            return Some(names[i].clone());
        }
        if redis.as_mut().is_some_and(|r| r.has_exited()) {
            return Some(REDIS_ROLE.to_owned());
        }
        tokio::select! {
            () = shutdown.wait() => return None,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}
