//! Logging setup: human-readable text on a terminal, one JSON object per line elsewhere (so log
//! shippers need no parsing rules). `RUST_LOG` filters as usual; the default is `info`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Installs the global subscriber. Logs go to stderr; stdout is reserved for command output.
pub fn init(format: Option<LogFormat>) {
    init_with(format, "info,sqlx=warn");
}

/// As [`init`], with `default_filter` when `RUST_LOG` is unset (benchmarks run the roles' code
/// in process, and their progress lines matter more than the roles' info logs).
pub fn init_with(format: Option<LogFormat>, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let format = format.unwrap_or(if std::io::stderr().is_terminal() { LogFormat::Text } else { LogFormat::Json });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(std::io::stderr().is_terminal()))
        // A log line that cannot be written is dropped. Left on, the subscriber reports the
        // failure with `eprintln!`, which panics when stderr is the broken pipe: a supervisor
        // that closed its end (a restarted journald, a dead `ranq up`) would panic whichever
        // task logs next — the signal task included, and SIGTERM would then go unheard.
        .log_internal_errors(false);
    // A second init (e.g. in tests) keeps the first subscriber; that is fine.
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Whether to colour output to a stream: the NO_COLOR and CLICOLOR_FORCE conventions first (a
/// supervisor such as `ranq up` forces colour through a pipe), else only on a terminal.
pub fn colour(is_terminal: bool) -> bool {
    if anstyle_query::no_color() { false } else { anstyle_query::clicolor_force() || is_terminal }
}

/// Histogram buckets per metric: batch sizes up to the largest sensible batch, durations from a
/// millisecond to a minute.
const BUCKETS: &[(&str, &[f64])] = &[
    (ranq_core::metrics::REFRESH_BATCH_SIZE, &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]),
    (
        ranq_core::metrics::REFRESH_SECONDS,
        &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
    ),
];

/// Serves the process's metrics as Prometheus text at `http://<addr>/metrics` (any path answers)
/// and makes this process's `metrics::*!` calls record into it.
pub fn serve_metrics(addr: std::net::SocketAddr) -> Result<(), String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let mut builder = PrometheusBuilder::new().with_http_listener(addr);
    for (name, buckets) in BUCKETS {
        builder = builder.set_buckets_for_metric(Matcher::Full((*name).into()), buckets).map_err(|e| e.to_string())?;
    }
    builder.install().map_err(|e| format!("cannot serve metrics on {addr}: {e}"))
}
