//! `ranq`: one binary for every role of the fleet. This file owns the process edge: parsing the
//! command line, loading settings, sending each subcommand to its module, and nothing else; exit
//! codes and one-line errors are `ranq_runtime::edge`'s.

mod cli;
mod commands;
mod context;

use std::process::ExitCode;

use clap::parser::ValueSource;

use crate::cli::{Cli, Command};
use crate::context::Context;

fn main() -> ExitCode {
    let (cli, matches) = match ranq_runtime::edge::parse_args::<Cli>(cli::command()) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    if cli.command.prints_and_exits() {
        // `ranq status | head` should end quietly when head does, as any Unix tool does. Only
        // for the short commands: a long-running role keeps Rust's SIGPIPE-ignoring default, so a
        // broken pipe is an error it handles, never a signal that kills it.
        sigpipe::reset();
    }
    if let Command::Completions(args) = &cli.command {
        return commands::config::completions(args);
    }
    let from_env: Vec<&'static str> = commands::config::GLOBAL_FLAGS
        .iter()
        .filter(|(key, ..)| matches.value_source(key) == Some(ValueSource::EnvVariable))
        .map(|(key, ..)| *key)
        .collect();
    ranq_runtime::edge::run_async(run(cli, matches, from_env))
}

async fn run(cli: Cli, matches: clap::ArgMatches, from_env: Vec<&'static str>) -> anyhow::Result<ExitCode> {
    let ctx = Context::load(&cli, &matches, from_env)?;
    // `up` prints its children's lines for a person to read, so its own are text too.
    let log_format = match cli.command {
        Command::Up(_) => ctx.settings.log_format.or(Some(ranq_runtime::LogFormat::Text)),
        _ => ctx.settings.log_format,
    };
    ranq_runtime::telemetry::init(log_format);
    match cli.command {
        Command::Migrate(args) => commands::admin::migrate(&ctx, &args).await,
        Command::Seed(args) => commands::admin::seed(&ctx, &args).await,
        Command::Producer(_) => commands::roles::producer(&ctx).await,
        Command::Worker(_) => commands::roles::worker(&ctx).await,
        Command::Serve(_) => commands::roles::serve(&ctx).await,
        Command::Refresh(args) => commands::refresh::refresh(&ctx, &args).await,
        Command::Dirty(args) => commands::inspect::dirty(&ctx, &args).await,
        Command::Get(args) => commands::inspect::get(&ctx, &args).await,
        Command::Status(args) => commands::status::status(&ctx, &args).await,
        Command::Dead(command) => commands::dead::dead(&ctx, &command).await,
        Command::Up(args) => commands::up::up(&ctx, &args).await,
        Command::Config(cli::ConfigCommand::Show(args)) => commands::config::show(&ctx, &args),
        Command::Completions(args) => Ok(commands::config::completions(&args)),
    }
}
