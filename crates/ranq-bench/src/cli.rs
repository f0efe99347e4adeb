//! The command line of `ranq-bench`. Doc comments here are the `--help` text;
//! `docs/reference/cli.md` is generated from them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ranq_runtime::GlobalArgs;

/// ranq's benchmarks: figures printed and written as JSON, never a pass or a fail on time.
///
/// Each bench works in a Postgres schema and a Redis namespace of its own and removes them when
/// it ends. The fleet's roles run as child processes of the `ranq` binary built beside this one.
#[derive(Debug, Parser)]
#[command(name = "ranq-bench", version, propagate_version = true, max_term_width = 100)]
pub struct Bench {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: BenchCommand,
}

fn duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw).map_err(|e| format!("{e} (use e.g. 1500ms, 90s or 10m)"))
}

/// A duration that must be more than zero (a period, a run's length).
fn positive_duration(raw: &str) -> Result<Duration, String> {
    duration(raw).and_then(|d| if d.is_zero() { Err("must be more than 0 (e.g. 10s)".into()) } else { Ok(d) })
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
    /// A real fleet (two producers, workers, the read API) on a private redis-server (or Sentinel,
    /// or Cluster) and behind a cuttable database proxy, under a fault every --every: workers and
    /// the leader killed, the leader paused, Redis restarted empty (or failed over), the database
    /// cut. Reports groups lost, time to
    /// converge, duplicate ticks, 5xx answers and memory.
    Chaos(ChaosArgs),
    /// A worker that acks every job without work (the refresh bench's ceiling).
    #[command(hide = true)]
    NoopWorker,
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
    /// Instead: the public tier past what it can serve (ten times its capacity, behind a Redis
    /// a few milliseconds away), then a scan over --scan-groups distinct groups; reports the
    /// latency of admitted requests, the share refused with 503, and the server's memory.
    #[arg(long)]
    pub overload: bool,
    /// Distinct group ids the --overload scan reads, one request each.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub scan_groups: u64,
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
    /// Run the fleet on a Redis Sentinel deployment of the bench's own (a master, a replica,
    /// three sentinels) and fail it over (`SENTINEL FAILOVER`) in place of restarting Redis.
    #[arg(long)]
    pub sentinel: bool,
    /// Run the fleet on a Redis Cluster of the bench's own (three masters, a replica each) and,
    /// in place of restarting Redis, fail a master over (`CLUSTER FAILOVER`) or SIGKILL one (and
    /// start it again, to rejoin as a replica).
    #[arg(long, conflicts_with = "sentinel")]
    pub cluster: bool,
    /// Also write the report as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("drawn").args(["svg", "markdown"]).multiple(true)))]
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
    pub read_skew: Skew,
    /// Latency added to every database query, as a list to sweep (e.g. 0ms,2ms,10ms,50ms): each
    /// value runs every architecture again on the same data and reads, with the database behind
    /// a proxy that holds each packet back half of it in each direction, so a round trip costs
    /// it whole.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = duration, default_value = "0ms")]
    pub db_latency: Vec<Duration>,
    /// Also write the report as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Also draw the figures as an SVG chart at PATH.
    #[arg(long, value_name = "PATH")]
    pub svg: Option<PathBuf>,
    /// Also write the figures as a Markdown table (with its header row) at PATH; with --replot,
    /// `-` prints it.
    #[arg(long, value_name = "PATH")]
    pub markdown: Option<PathBuf>,
    /// The language of the --markdown table's header and names.
    #[arg(long, value_enum, default_value_t = Lang::En, requires = "markdown")]
    pub lang: Lang,
    /// Draw the --svg chart or write the --markdown table from a JSON report written earlier (by
    /// --json) instead of running.
    #[arg(long, value_name = "JSON")]
    #[arg(requires = "drawn")]
    pub replot: Option<PathBuf>,
}

/// The language of a generated table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// English.
    En,
    /// Korean (한국어).
    Ko,
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

/// How reads choose their group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Skew {
    Uniform,
    /// Zipf with this exponent (1.0: the k-th most read group gets 1/k of the top one's reads).
    Zipf(f64),
}

impl std::str::FromStr for Skew {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{raw:?}: use uniform, zipf (exponent 1.0) or zipf:S with S > 0, e.g. zipf:1.2");
        match raw {
            "uniform" => Ok(Self::Uniform),
            "zipf" => Ok(Self::Zipf(1.0)),
            _ => {
                let s: f64 = raw.strip_prefix("zipf:").and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                if s > 0.0 && s.is_finite() { Ok(Self::Zipf(s)) } else { Err(bad()) }
            }
        }
    }
}

impl std::fmt::Display for Skew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Uniform => write!(f, "uniform"),
            Self::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_parses_and_names_the_fix() {
        assert_eq!("zipf".parse::<Skew>(), Ok(Skew::Zipf(1.0)));
        assert_eq!("zipf:1.5".parse::<Skew>(), Ok(Skew::Zipf(1.5)));
        assert_eq!("uniform".parse::<Skew>(), Ok(Skew::Uniform));
        assert!("zipf:-1".parse::<Skew>().expect_err("negative exponent").contains("zipf:S"));
    }
}
