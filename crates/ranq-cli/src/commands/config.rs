//! `ranq config show` and `ranq completions`: what ranq will run with, and help for the shell.
//!
//! `config show` prints the effective settings as TOML a user can paste into a config file, each
//! value annotated with the layer it came from, so "why is it doing that?" has an answer without
//! reading four sources by hand. URLs are printed with their passwords as `***`.

use std::process::ExitCode;

use ranq_runtime::{Explained, Origin};
use serde_json::json;

use crate::cli::{CompletionsArgs, ConfigShowArgs};
use crate::context::Context;

/// Global flags whose value clap may have read from its own environment variable, by setting key:
/// (flag, variable). The settings layer cannot tell those apart from the flag; clap can.
pub const GLOBAL_FLAGS: &[(&str, &str, &str)] = &[
    ("database_url", "--database-url", "DATABASE_URL"),
    ("redis_url", "--redis-url", "REDIS_URL"),
    ("namespace", "--namespace", "RANQ_NAMESPACE"),
    ("log_format", "--log-format", "RANQ_LOG_FORMAT"),
];

pub fn show(ctx: &Context, args: &ConfigShowArgs) -> anyhow::Result<ExitCode> {
    let mut settings = ctx.explain()?;
    // Top-level keys first, then one section after another, as a TOML file must be laid out.
    settings.sort_by_key(|s| (s.key.contains('.'), s.key.clone()));
    if args.json {
        let list: Vec<_> = settings
            .iter()
            .map(|s| {
                let (source, from) = describe_origin(ctx, s);
                json!({ "key": s.key, "value": redacted(s), "source": source, "from": from })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(ExitCode::SUCCESS);
    }
    println!("# ranq's effective configuration (flag > environment > file > default)");
    let mut section = "";
    for s in &settings {
        let (table, name) = s.key.rsplit_once('.').unwrap_or(("", &s.key));
        if table != section {
            println!("\n[{table}]");
            section = table;
        }
        let (source, from) = describe_origin(ctx, s);
        let origin = from.map_or_else(|| source.to_owned(), |from| format!("{source} {from}"));
        match redacted(s) {
            serde_json::Value::Null => println!("# {name} is unset  # {origin}"),
            value => println!("{name} = {}  # {origin}", toml_value(&value)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// ("default" | "file" | "env" | "flag", and the file, variable or flag).
fn describe_origin(ctx: &Context, s: &Explained) -> (&'static str, Option<String>) {
    match &s.origin {
        Origin::Default => ("default", None),
        Origin::File(path) => ("file", Some(path.display().to_string())),
        Origin::Env(var) => ("env", Some(var.clone())),
        Origin::Flag => match GLOBAL_FLAGS.iter().find(|(key, ..)| *key == s.key) {
            Some((_, _, var)) if ctx.from_env.contains(&s.key.as_str()) => ("env", Some((*var).to_owned())),
            Some((_, flag, _)) => ("flag", Some((*flag).to_owned())),
            None => ("flag", None),
        },
    }
}

/// The value as JSON, with any password in a URL setting replaced by `***`.
fn redacted(s: &Explained) -> serde_json::Value {
    let value = s.value.as_ref().and_then(|v| serde_json::to_value(v).ok()).unwrap_or_default();
    match value {
        serde_json::Value::String(url) if s.key.ends_with("_url") => ranq_core::redact_url(&url).into(),
        other => other,
    }
}

/// A JSON scalar as TOML: JSON's string escapes are valid in TOML basic strings.
fn toml_value(value: &serde_json::Value) -> String {
    value.to_string()
}

pub fn completions(args: &CompletionsArgs) -> ExitCode {
    let mut command = crate::cli::command();
    clap_complete::generate(args.shell, &mut command, "ranq", &mut std::io::stdout());
    ExitCode::SUCCESS
}
