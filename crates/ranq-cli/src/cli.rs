//! The command line (CONTRACT §1–2). Doc comments here are the `--help` text users read.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ranq_runtime::{LogFormat, ProducerMode};

/// ranq keeps every group's top-100 leaderboard pre-computed in Redis.
///
/// A producer enqueues one refresh job per group on a cron schedule; workers refresh groups in
/// batches (one SQL query, one Redis pipeline); `serve` answers reads from Redis alone, saying
/// whether each answer is FRESH, STALE or a MISS.
#[derive(Debug, Parser)]
#[command(name = "ranq", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes. A flag beats its environment variable, which beats the config
/// file, which beats the built-in default.
#[derive(Debug, Args)]
pub struct Global {
    /// TOML config file [default: config/default.toml when present].
    #[arg(long, global = true, env = "RANQ_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Source database: postgres://… or sqlite:path.db.
    #[arg(long, global = true, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Redis holding the cache and the queue [default: redis://127.0.0.1:6379].
    #[arg(long, global = true, env = "REDIS_URL", value_name = "URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several fleets can share one Redis [default: ranq].
    #[arg(long, global = true, env = "RANQ_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// Log format [default: text on a terminal, json otherwise].
    #[arg(long, global = true, env = "RANQ_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormatArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(value: LogFormatArg) -> Self {
        match value {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Every group, every tick.
    All,
    /// Only groups in the dirty set, plus a full sweep every --sweep-every ticks.
    Dirty,
}

impl From<ModeArg> for ProducerMode {
    fn from(value: ModeArg) -> Self {
        match value {
            ModeArg::All => ProducerMode::All,
            ModeArg::Dirty => ProducerMode::Dirty,
        }
    }
}

fn duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw).map_err(|e| format!("{e} (use e.g. 1500ms, 90s or 10m)"))
}

/// A duration that must be more than zero (a period, a run's length).
fn positive_duration(raw: &str) -> Result<Duration, String> {
    duration(raw).and_then(|d| if d.is_zero() { Err("must be more than 0 (e.g. 10s)".into()) } else { Ok(d) })
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the embedded schema migrations to DATABASE_URL (Postgres or SQLite); idempotent.
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
    /// Benchmarks: print figures and write JSON; each uses a fresh schema and namespace.
    #[command(subcommand)]
    Bench(BenchCommand),
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

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Many full ticks back to back through the real producer tick, queue and worker processes:
    /// time per tick, Redis memory and worker RSS from the first tick to the last.
    Soak(SoakArgs),
    /// One full refresh of every group through the real queue and worker processes, beside the
    /// no-op queue ceiling, a naive one-query-per-group refresh and the batched SQL + SET floor.
    Refresh(RefreshBenchArgs),
    /// The read API serving a cached top-100 under load, beside a minimal server answering the
    /// same bytes: requests per second at full load, latency percentiles at half load.
    Read(ReadBenchArgs),
    /// The three architectures of the design — sharded lock, queue (ranq), on demand with a lock
    /// (and with stale-while-revalidate) — on the same data and read workload: database and Redis
    /// load, lock traffic, read latency, FRESH/STALE/MISS shares and the age of what readers saw.
    Compare(CompareArgs),
    /// A real fleet (two producers, workers, the read API) on a private redis-server and behind a
    /// cuttable database proxy, under a fault every --every: workers and the leader killed, the
    /// leader paused, Redis restarted empty, the database cut. Reports groups lost, time to
    /// converge, duplicate ticks, 5xx answers and memory.
    Chaos(ChaosArgs),
    /// A worker that acks every job without work (the refresh bench's ceiling).
    #[command(hide = true)]
    NoopWorker {
        /// Consume with apalis-redis's per-job leases on, as it ships.
        #[arg(long)]
        stock_leases: bool,
    },
}

#[derive(Debug, Args)]
pub struct RefreshBenchArgs {
    /// Groups to seed.
    #[arg(long, default_value_t = 10_000)]
    pub groups: u32,
    /// Members per group.
    #[arg(long, default_value_t = 200)]
    pub members: u32,
    /// Worker processes (and parallel loops for the no-queue floor).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
    /// Also write the report as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReadBenchArgs {
    /// Seconds of load per measurement, in one-second turns (four measurements in all).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// Concurrent keep-alive connections of the load generator at full load.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub connections: u32,
    /// Also write the report as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// How long to inject faults.
    #[arg(long, value_name = "DUR", value_parser = positive_duration, default_value = "10m")]
    pub duration: Duration,
    /// Time between the starts of two faults.
    #[arg(long, value_name = "DUR", value_parser = positive_duration, default_value = "30s")]
    pub every: Duration,
    /// Groups to seed.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub groups: u32,
    /// Members per group.
    #[arg(long, default_value_t = 50)]
    pub members: u32,
    /// Worker processes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub workers: u32,
    /// Also write the report as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Groups to seed.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub groups: u32,
    /// Members per group.
    #[arg(long, default_value_t = 100)]
    pub members: u32,
    /// Servers competing for locks (architecture 1) and worker processes (architecture 2).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub servers: u32,
    /// Measured time per architecture.
    #[arg(long, value_name = "DUR", value_parser = positive_duration, default_value = "30s")]
    pub duration: Duration,
    /// The refresh period (ranq's one-minute tick, compressed; also architecture 3's TTL).
    #[arg(long, value_name = "DUR", value_parser = positive_duration, default_value = "10s")]
    pub period: Duration,
    /// Reads per second, arriving at a steady rate whatever the answers' latency.
    #[arg(long, value_name = "R", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub read_rate: u32,
    /// How reads pick their group: zipf (exponent 1), zipf:S, or uniform.
    #[arg(long, value_name = "SKEW", default_value = "zipf")]
    pub read_skew: crate::commands::bench::Skew,
    /// Also write the report as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Also draw the figures as an SVG chart at PATH.
    #[arg(long, value_name = "PATH")]
    pub svg: Option<PathBuf>,
    /// Draw the --svg chart from a JSON report written earlier (by --json) instead of running.
    #[arg(long, value_name = "JSON", requires = "svg")]
    pub replot: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Groups to seed.
    #[arg(long, default_value_t = 100_000)]
    pub groups: u32,
    /// Members per group.
    #[arg(long, default_value_t = 10)]
    pub members: u32,
    /// Full ticks to run.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub ticks: u32,
    /// Worker processes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
    /// Also write the report as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Also install the change feed (Postgres only): triggers that announce every changed group,
    /// which producers in dirty mode turn into dirty marks.
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
    /// Cron expression with a seconds field [default: "0 * * * * *", every minute].
    #[arg(long, value_name = "CRON")]
    pub schedule: Option<String>,
    /// Which groups each tick enqueues [default: all].
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// In dirty mode, a full sweep every N ticks (0 = never) [default: 10].
    #[arg(long, value_name = "N")]
    pub sweep_every: Option<u32>,
    /// Serve Prometheus metrics at ADDR (e.g. 0.0.0.0:9108) [default: off].
    #[arg(long, value_name = "ADDR", env = "RANQ_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Jobs handled at once [default: 256].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// Groups per SQL query and Redis pipeline [default: 128].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: Option<u32>,
    /// Longest wait for a batch to fill [default: 5ms].
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub batch_wait: Option<Duration>,
    /// Serve Prometheus metrics at ADDR (e.g. 0.0.0.0:9108) [default: off].
    #[arg(long, value_name = "ADDR", env = "RANQ_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
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
    /// Print one JSON object (CONTRACT §6) instead of a table.
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
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Producer schedule for the local fleet.
    #[arg(long, value_name = "CRON", default_value = "*/10 * * * * *")]
    pub schedule: String,
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
