//! The process edge every ranq binary shares: the global flags, parsing the command line, and
//! turning every failure into one line on stderr with its exit code — 0 success, 1 a runtime
//! failure, 2 a usage or configuration error. Passwords in URLs never reach the line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, FromArgMatches};

use crate::settings::{ConfigError, LogFormat, Overrides, Settings};

/// A mistake in how ranq was invoked or configured: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Options every subcommand takes. A flag beats its environment variable, which beats the config
/// file, which beats the built-in default. Shown under their own heading in every help.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// TOML config file [default: config/default.toml when present].
    #[arg(long, global = true, env = "RANQ_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Source database: postgres://…, mysql://… (or mariadb://…) or sqlite:path.db.
    #[arg(long, global = true, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Redis holding the cache and the queue: redis://…, rediss://… (TLS),
    /// redis+sentinel://s1,s2/<master> (Sentinel), redis+cluster://n1,n2 (Cluster).
    #[arg(long, global = true, env = "REDIS_URL", value_name = "URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several fleets can share one Redis.
    #[arg(long, global = true, env = "RANQ_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// Log format [default: text on a terminal, json otherwise].
    #[arg(long, global = true, env = "RANQ_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

impl GlobalArgs {
    /// The settings layer of these flags (and of the variables clap read for them).
    pub fn overrides(&self) -> Overrides {
        Overrides {
            database_url: self.database_url.clone(),
            redis_url: self.redis_url.clone(),
            namespace: self.namespace.clone(),
            log_format: self.log_format,
            ..Overrides::default()
        }
    }
}

/// A flag that sets a setting: the subcommand it belongs to (`None`: a global flag), its id, and
/// the setting's dotted key. One table of these per binary drives both the flag's help, which
/// shows the setting's built-in default, and the settings layer the flag's value enters.
#[derive(Debug, Clone, Copy)]
pub struct SettingFlag {
    pub command: Option<&'static str>,
    pub arg: &'static str,
    pub key: &'static str,
}

/// The global flags that set a setting.
pub const GLOBAL_SETTING_FLAGS: &[SettingFlag] = &[
    SettingFlag { command: None, arg: "redis_url", key: "redis_url" },
    SettingFlag { command: None, arg: "namespace", key: "namespace" },
];

/// `command` with `[default: …]` after the help of every flag in `flags`, read from the
/// settings' built-in defaults, so a default is written once, in `Settings::default`.
pub fn show_setting_defaults(mut command: clap::Command, flags: &[SettingFlag]) -> clap::Command {
    for flag in flags {
        let Some(default) = Settings::default_text(flag.key) else { continue };
        // In place (`mut_args`), so the flag keeps its place in the help.
        let annotate = |arg: clap::Arg| {
            if arg.get_id() != flag.arg {
                return arg;
            }
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} [default: {default}]"))
        };
        command = match flag.command {
            None => command.mut_args(annotate),
            Some(sub) => command.mut_subcommand(sub, |c| c.mut_args(annotate)),
        };
    }
    command
}

/// The settings layer of the flags in `flags` that were given on the command line, their text
/// read as the settings' own types.
pub fn setting_overrides(overrides: &mut Overrides, matches: &clap::ArgMatches, flags: &[SettingFlag]) {
    for flag in flags.iter().filter(|f| f.command.is_some()) {
        let Some(sub) = flag.command.and_then(|name| matches.subcommand_matches(name)) else { continue };
        if sub.value_source(flag.arg) != Some(clap::parser::ValueSource::CommandLine)
            && sub.value_source(flag.arg) != Some(clap::parser::ValueSource::EnvVariable)
        {
            continue;
        }
        if let Some(text) = sub.get_raw(flag.arg).and_then(|mut raw| raw.next()).and_then(|t| t.to_str()) {
            overrides.set_text(flag.key, text);
        }
    }
}

/// Parses the command line of `C`, as `command` (its `C::command()`, decorated) describes it.
/// `--help` and `--version` print and exit 0, a bare command that needs a subcommand prints its
/// help and exits 2, and any other mistake is one line on stderr and exit 2.
pub fn parse_args<C: FromArgMatches>(command: clap::Command) -> Result<(C, clap::ArgMatches), ExitCode> {
    let matches = match command.clone().try_get_matches() {
        Ok(matches) => matches,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand || !e.use_stderr() => {
            e.exit()
        }
        Err(e) => {
            eprintln!("{}", usage_error_line(&e, command));
            return Err(ExitCode::from(2));
        }
    };
    let parsed = C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    Ok((parsed, matches))
}

/// Runs `main` on a multi-threaded runtime and turns its outcome into the exit code, printing a
/// failure as one line: what failed, and (in the message) what to check.
pub fn run_async(main: impl Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(main) {
        Ok(code) => code,
        Err(error) => {
            let usage = error.chain().any(|e| e.is::<UsageError>() || e.is::<ConfigError>());
            eprintln!("error: {}", one_line(&error));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// The error and its causes on one line, each cause once: our messages often quote their source
/// already, so a cause whose text is already in the line adds nothing. Passwords are redacted.
pub fn one_line(error: &anyhow::Error) -> String {
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
pub fn usage_error_line(error: &clap::Error, root: clap::Command) -> String {
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
    let mut path = vec![root.get_name().to_owned()];
    let mut command = root;
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
