//! `ranq-bench`: the measurement lab. Every bench prints its figures (and writes them as JSON)
//! and never passes or fails on time; each works in a Postgres schema and a Redis namespace of
//! its own, removed when it ends, so it can run against a shared database and Redis.
//!
//! The benches drive the real fleet: they run the `ranq` binary that `cargo build` puts beside
//! this one as child processes (workers, producers, the read API), and call the roles' crates in
//! process where a bench times one step. Nothing here ships in the `ranq` binary or its image.

mod chaos;
mod cli;
mod compare;
mod load;
mod noop;
mod overload;
mod read;
mod refresh;
mod sandbox;
mod soak;

use std::process::ExitCode;

use crate::cli::{Bench, BenchCommand};
use crate::sandbox::Lab;

fn main() -> ExitCode {
    let command = ranq_runtime::edge::show_setting_defaults(
        <Bench as clap::CommandFactory>::command(),
        ranq_runtime::edge::GLOBAL_SETTING_FLAGS,
    );
    let (bench, _) = match ranq_runtime::edge::parse_args::<Bench>(command) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    ranq_runtime::edge::run_async(run(bench))
}

async fn run(bench: Bench) -> anyhow::Result<ExitCode> {
    let lab = Lab::load(&bench.global)?;
    // The roles' info logs would drown the benches' progress lines.
    ranq_runtime::telemetry::init_with(lab.settings.log_format, "warn");
    match bench.command {
        BenchCommand::Soak(args) => soak::soak(&lab, &args).await,
        BenchCommand::Refresh(args) => refresh::refresh(&lab, &args).await,
        BenchCommand::Read(args) if args.overload => overload::overload(&lab, &args).await,
        BenchCommand::Read(args) => read::read(&lab, &args).await,
        BenchCommand::Compare(args) => compare::compare(&lab, &args).await,
        BenchCommand::Chaos(args) => chaos::chaos(&lab, &args).await,
        BenchCommand::NoopWorker => noop::noop_worker(&lab).await,
    }
}
