//! `ranq`: one binary for every role of the fleet. This file owns the process edge: parsing the
//! command line, loading settings, mapping failures to exit codes (CONTRACT §1), and nothing else.

mod cli;
mod commands;
mod context;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::context::{Context, UsageError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            // One line: what failed, and (in the message) what to check.
            let usage = error.chain().any(|e| e.is::<UsageError>() || e.is::<ranq_runtime::ConfigError>());
            eprintln!("error: {}", ranq_core::redact_url(&format!("{error:#}")));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Context::load(&cli)?;
    ranq_runtime::telemetry::init(ctx.settings.log_format);
    match cli.command {
        Command::Migrate(args) => commands::admin::migrate(&ctx, &args).await,
        Command::Seed(args) => commands::admin::seed(&ctx, &args).await,
        Command::Producer(_) => commands::fleet::producer(&ctx).await,
        Command::Worker(_) => commands::fleet::worker(&ctx).await,
        Command::Serve(_) => commands::fleet::serve(&ctx).await,
        Command::Refresh(args) => commands::refresh::refresh(&ctx, &args).await,
        Command::Dirty(args) => commands::inspect::dirty(&ctx, &args).await,
        Command::Get(args) => commands::inspect::get(&ctx, &args).await,
        Command::Status(args) => commands::inspect::status(&ctx, &args).await,
        Command::Dead(command) => commands::dead::dead(&ctx, &command).await,
        Command::Up(args) => commands::up::up(&ctx, &args).await,
        Command::Bench(cli::BenchCommand::Soak(args)) => commands::bench::soak(&ctx, &args).await,
        Command::Bench(cli::BenchCommand::Refresh(args)) => commands::bench::refresh(&ctx, &args).await,
        Command::Bench(cli::BenchCommand::Read(args)) => commands::bench::read(&ctx, &args).await,
        Command::Bench(cli::BenchCommand::NoopWorker { stock_leases }) => {
            commands::bench::noop_worker(&ctx, stock_leases).await
        }
    }
}
