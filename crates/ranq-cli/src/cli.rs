//! The command line. Doc comments here are the `--help` text users read; `docs/reference/cli.md`
//! is generated from them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use ranq_runtime::edge::{GLOBAL_SETTING_FLAGS, SettingFlag};
use ranq_runtime::{GlobalArgs, ProducerMode};

/// ranq keeps every group's top-100 leaderboard pre-computed in Redis.
///
/// A producer enqueues one refresh job per group on a cron schedule; workers refresh groups in
/// batches (one SQL query, one Redis pipeline); `serve` answers reads from Redis alone, saying
/// whether each answer is FRESH, STALE or a MISS.
#[derive(Debug, Parser)]
#[command(name = "ranq", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The per-command flags that set a setting. Their values enter the settings' flag layer, and
/// their help shows the setting's built-in default (`ranq_runtime::edge`).
pub const SETTING_FLAGS: &[SettingFlag] = &[
    SettingFlag { command: Some("producer"), arg: "schedule", key: "producer.schedule" },
    SettingFlag { command: Some("producer"), arg: "mode", key: "producer.mode" },
    SettingFlag { command: Some("producer"), arg: "sweep_every", key: "producer.sweep_every" },
    SettingFlag { command: Some("producer"), arg: "metrics_listen", key: "metrics_listen" },
    SettingFlag { command: Some("worker"), arg: "concurrency", key: "worker.concurrency" },
    SettingFlag { command: Some("worker"), arg: "batch_size", key: "worker.batch_size" },
    SettingFlag { command: Some("worker"), arg: "batch_wait", key: "worker.batch_wait" },
    SettingFlag { command: Some("worker"), arg: "metrics_listen", key: "metrics_listen" },
    SettingFlag { command: Some("serve"), arg: "listen", key: "read.listen" },
    SettingFlag { command: Some("serve"), arg: "admin_listen", key: "read.admin_listen" },
    SettingFlag { command: Some("up"), arg: "listen", key: "read.listen" },
    SettingFlag { command: Some("up"), arg: "admin_listen", key: "read.admin_listen" },
];

/// The command line as users see it: [`Cli`], with each setting flag's default.
pub fn command() -> clap::Command {
    let command = ranq_runtime::edge::show_setting_defaults(Cli::command(), GLOBAL_SETTING_FLAGS);
    ranq_runtime::edge::show_setting_defaults(command, SETTING_FLAGS)
}

fn duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw).map_err(|e| format!("{e} (use e.g. 1500ms, 90s or 10m)"))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the embedded schema migrations to DATABASE_URL (Postgres, MySQL/MariaDB or SQLite); idempotent.
    Migrate(MigrateArgs),
    /// Write deterministic demo data: groups 1..=N with M members each.
    Seed(SeedArgs),
    /// Run the cron producer: enqueue refresh jobs every tick.
    Producer(ProducerArgs),
    /// Run a worker: consume refresh jobs and write snapshots, in batches.
    Worker(WorkerArgs),
    /// Run the read API (serves cached data only; never touches the database).
    Serve(ServeArgs),
    /// Enqueue refresh jobs now, optionally waiting until they are written.
    Refresh(RefreshArgs),
    /// Mark groups dirty so the next dirty-mode tick refreshes them.
    Dirty(DirtyArgs),
    /// Print a group's cached top-N with its status, as the API would answer.
    Get(GetArgs),
    /// Show the fleet at a glance: ticks, queue, workers, freshness, quarantine.
    Status(StatusArgs),
    /// Inspect and manage the dead letter: jobs that will not be retried on their own.
    #[command(subcommand)]
    Dead(DeadCommand),
    /// Run a whole local fleet: migrate, seed when empty, producer, workers and the read API.
    Up(UpArgs),
    /// Inspect the configuration ranq runs with.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script, e.g. `ranq completions bash > /etc/bash_completion.d/ranq`.
    Completions(CompletionsArgs),
}

impl Command {
    /// Commands that print a result and exit, as opposed to the long-running roles.
    pub fn prints_and_exits(&self) -> bool {
        matches!(
            self,
            Self::Get(_) | Self::Status(_) | Self::Dead(DeadCommand::List(_)) | Self::Config(_) | Self::Completions(_)
        )
    }
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Also install the change feed: triggers that report every changed group (Postgres: by
    /// NOTIFY; MySQL/MariaDB and SQLite: into the outbox table), which producers in dirty mode
    /// turn into dirty marks.
    #[arg(long)]
    pub with_triggers: bool,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Number of groups.
    #[arg(long, default_value_t = 1_000)]
    pub groups: u32,
    /// Members per group.
    #[arg(long, default_value_t = 200)]
    pub members: u32,
    /// Seed of the score generator; the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Delete existing groups first.
    #[arg(long)]
    pub replace: bool,
}

#[derive(Debug, Args)]
pub struct ProducerArgs {
    /// Cron expression with a seconds field: sec min hour day-of-month month day-of-week.
    #[arg(long, value_name = "CRON")]
    pub schedule: Option<String>,
    /// Which groups each tick enqueues.
    #[arg(long, value_enum)]
    pub mode: Option<ProducerMode>,
    /// In dirty mode, a full sweep every N ticks (0 = never).
    #[arg(long, value_name = "N")]
    pub sweep_every: Option<u32>,
    /// Serve Prometheus metrics at ADDR (e.g. 0.0.0.0:9108); unset: not served.
    #[arg(long, value_name = "ADDR", env = "RANQ_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Jobs handled at once.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// Groups per SQL query and Redis pipeline.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: Option<u32>,
    /// Longest wait for a batch to fill.
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub batch_wait: Option<Duration>,
    /// Serve Prometheus metrics at ADDR (e.g. 0.0.0.0:9108); unset: not served.
    #[arg(long, value_name = "ADDR", env = "RANQ_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the public listener: the groups API and the board.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Address of the admin listener: the operations page, /v1/status and /metrics.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target").required(true).multiple(true).args(["all", "groups", "from_file"]))]
pub struct RefreshArgs {
    /// Group ids to refresh (`-` reads them from stdin).
    #[arg(value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Refresh every group in the source (needs DATABASE_URL).
    #[arg(long, conflicts_with_all = ["groups", "from_file"])]
    pub all: bool,
    /// Also refresh the group ids in PATH (whitespace- or comma-separated; `-` is stdin).
    #[arg(long, value_name = "PATH")]
    pub from_file: Option<PathBuf>,
    /// Wait until every group's cached version is newer than this request.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits before giving up (exit 1).
    #[arg(long, value_name = "DUR", value_parser = duration, default_value = "60s")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct DirtyArgs {
    /// Group ids to mark.
    #[arg(value_name = "GROUP", required = true)]
    pub groups: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Group id.
    pub group: String,
    /// Entries to show, 1..=100.
    #[arg(long, value_name = "N")]
    pub limit: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List dead jobs: id, group, attempts, last error.
    List(DeadListArgs),
    /// Turn dead refresh jobs back into fresh jobs (malformed ones are left for purge).
    Retry(DeadTargetArgs),
    /// Delete dead jobs for good.
    Purge(DeadTargetArgs),
}

#[derive(Debug, Args)]
pub struct DeadListArgs {
    /// Most jobs to show.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["all", "ids"]))]
pub struct DeadTargetArgs {
    /// Dead job ids, as `ranq dead list` shows them.
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    /// Every dead job.
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Redraw every second until Ctrl-C (with --json: one object per line).
    #[arg(long, conflicts_with = "stale")]
    pub watch: bool,
    /// List the groups older than read.stale_after instead, oldest first.
    #[arg(long)]
    pub stale: bool,
    /// With --stale: most groups to list.
    #[arg(long, value_name = "N", default_value_t = 100, requires = "stale",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Demo groups to seed when the database is empty.
    #[arg(long, default_value_t = 1_000)]
    pub groups: u32,
    /// Members per demo group.
    #[arg(long, default_value_t = 200)]
    pub members: u32,
    /// Worker processes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
    /// Address of the read API.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Address of the read API's admin listener (operations page, metrics).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Producer schedule for the local fleet.
    #[arg(long, value_name = "CRON", default_value = "*/10 * * * * *")]
    pub schedule: String,
    /// Run the fleet on a Redis Cluster of its own (three masters and a replica each, on free
    /// ports, stopped with the fleet) instead of REDIS_URL: a try-out of cluster mode. Needs
    /// redis-server and redis-cli.
    #[arg(long)]
    pub redis_cluster: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every setting's effective value and where it came from (default, file, env or flag),
    /// as TOML; passwords in URLs are shown as ***.
    Show(ConfigShowArgs),
}

#[derive(Debug, Args)]
pub struct ConfigShowArgs {
    /// Print a JSON array of {key, value, source, from} instead.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
