//! `ranq`: one binary for every role of the fleet. This file owns the process edge: parsing the
//! command line, loading settings, mapping failures to exit codes (CONTRACT §1), and nothing else.

mod cli;
mod commands;
mod context;

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};
use crate::context::{Context, UsageError};

fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(matches) => matches,
        // A bare `ranq` or `ranq dead` asks for help (exit 2); --help and --version print to
        // stdout (exit 0): clap's own output is the answer.
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand || !e.use_stderr() => {
            e.exit()
        }
        Err(e) => {
            eprintln!("{}", usage_error_line(&e));
            return ExitCode::from(2);
        }
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
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
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli, from_env)) {
        Ok(code) => code,
        Err(error) => {
            // One line: what failed, and (in the message) what to check.
            let usage = error.chain().any(|e| e.is::<UsageError>() || e.is::<ranq_runtime::ConfigError>());
            eprintln!("error: {}", one_line(&error));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

async fn run(cli: Cli, from_env: Vec<&'static str>) -> anyhow::Result<ExitCode> {
    let ctx = Context::load(&cli, from_env)?;
    // `up` prints its children's lines for a person to read, so its own are text too.
    let log_format = match cli.command {
        Command::Up(_) => ctx.settings.log_format.or(Some(ranq_runtime::LogFormat::Text)),
        _ => ctx.settings.log_format,
    };
    match cli.command {
        Command::Bench(_) => ranq_runtime::telemetry::init_with(log_format, "warn"),
        _ => ranq_runtime::telemetry::init(log_format),
    }
    match cli.command {
        Command::Migrate(args) => commands::admin::migrate(&ctx, &args).await,
        Command::Seed(args) => commands::admin::seed(&ctx, &args).await,
        Command::Producer(_) => commands::fleet::producer(&ctx).await,
        Command::Worker(_) => commands::fleet::worker(&ctx).await,
        Command::Serve(_) => commands::fleet::serve(&ctx).await,
        Command::Refresh(args) => commands::refresh::refresh(&ctx, &args).await,
        Command::Dirty(args) => commands::inspect::dirty(&ctx, &args).await,
        Command::Get(args) => commands::inspect::get(&ctx, &args).await,
        Command::Status(args) => commands::status::status(&ctx, &args).await,
        Command::Dead(command) => commands::dead::dead(&ctx, &command).await,
        Command::Up(args) => commands::up::up(&ctx, &args).await,
        Command::Config(cli::ConfigCommand::Show(args)) => commands::config::show(&ctx, &args),
        Command::Completions(args) => Ok(commands::config::completions(&args)),
        Command::Bench(cli::BenchCommand::Soak(args)) => commands::bench::soak(&ctx, &args).await,
        Command::Bench(cli::BenchCommand::Refresh(args)) => commands::bench::refresh(&ctx, &args).await,
        Command::Bench(cli::BenchCommand::Read(args)) => commands::bench::read(&ctx, &args).await,
        Command::Bench(cli::BenchCommand::Compare(args)) => commands::bench::compare(&ctx, &args).await,
        Command::Bench(cli::BenchCommand::Chaos(args)) => commands::bench::chaos(&ctx, &args).await,
        Command::Bench(cli::BenchCommand::NoopWorker { stock_leases }) => {
            commands::bench::noop_worker(&ctx, stock_leases).await
        }
    }
}

/// The error and its causes on one line, each cause once: our messages often quote their source
/// already, so a cause whose text is already in the line adds nothing. Passwords are redacted.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    ranq_core::redact_url(&line.replace(['\n', '\r'], " "))
}

/// clap's usage error on one line: the error, its tips and allowed values, and the command whose
/// `--help` explains the rest (instead of clap's multi-line usage block).
fn usage_error_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let mut line = String::new();
    for part in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if part.starts_with("Usage:") || part.starts_with("For more information") {
            continue;
        }
        if !line.is_empty() {
            line.push_str(if line.ends_with(':') { " " } else { "; " });
        }
        line.push_str(part);
    }
    // The subcommand the user was typing, found by walking the command tree along the arguments
    // (the value after an option that takes one is not a subcommand: `--namespace bench`).
    let mut command = Cli::command();
    let mut path = vec!["ranq".to_owned()];
    let mut skip_value = false;
    for arg in std::env::args_os().skip(1) {
        let arg = arg.to_string_lossy();
        if std::mem::take(&mut skip_value) {
            continue;
        }
        if let Some(long) = arg.strip_prefix("--").filter(|a| !a.contains('=')) {
            skip_value = command.get_arguments().any(|a| a.get_long() == Some(long) && a.get_action().takes_values());
            continue;
        }
        let Some(sub) = command.find_subcommand(arg.as_ref()).cloned() else { continue };
        path.push(arg.into_owned());
        command = sub;
    }
    // The arguments are quoted back in clap's message; a URL among them keeps its password out.
    ranq_core::redact_url(&format!("{line} (see `{} --help`)", path.join(" ")))
}
