//! Typed settings, layered (lowest to highest): built-in defaults, the TOML file, environment
//! variables, command-line flags (see `docs/reference/configuration.md`).
//!
//! Layering is figment's job; this module only declares the shape and the sources. Unknown keys
//! are rejected (`deny_unknown_fields`) so a typo in a file or an env var is an error naming the
//! key, not a silently ignored setting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ranq_core::FreshnessPolicy;
use serde::{Deserialize, Serialize};

/// The default config file, read when present and no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Source database (Postgres or SQLite URL); required by the commands that read the source.
    pub database_url: Option<String>,
    pub redis_url: String,
    pub namespace: String,
    /// `text` or `json`; unset means text on a terminal, JSON otherwise.
    pub log_format: Option<LogFormat>,
    /// How long a process may take to drain after SIGTERM/SIGINT.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Where `producer` and `worker` serve Prometheus metrics (`serve` has its own `/metrics`);
    /// unset: not served.
    pub metrics_listen: Option<String>,
    pub redis: RedisSettings,
    pub source: SourceSettings,
    pub producer: ProducerSettings,
    pub worker: WorkerSettings,
    pub read: ReadSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProducerMode {
    /// Every group, every tick.
    #[default]
    All,
    /// Only the groups in the dirty set, plus a full sweep every --sweep-every ticks.
    Dirty,
}

/// How ranq speaks TLS to Redis (`rediss://` URLs); the URL itself is `redis_url`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// A CA certificate file (PEM) to verify the server with, instead of the system's roots.
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate (PEM) and its key, for servers that ask for mutual TLS.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Do not verify the server's certificate at all (a warning says so at start-up); the same
    /// as `#insecure` at the end of the URL.
    pub tls_insecure: bool,
}

/// The user's own SQL for data outside the reference schema; unset keys use it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    pub top_query: Option<String>,
    pub groups_query: Option<String>,
    pub group_ids_query: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSettings {
    /// Cron expression with a seconds field.
    pub schedule: String,
    pub mode: ProducerMode,
    pub sweep_every: u32,
    /// Lifetime of the leader lease: a standby takes over at most this long after the leader dies.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Jobs pushed per queue round trip.
    pub enqueue_chunk: usize,
    /// Most jobs allowed to wait in the queue before the producer holds back (apalis-redis fails
    /// when ~8,000 jobs fall due at once).
    pub max_backlog: usize,
    /// How long one tick may wait for the backlog to drain before deferring the rest of its groups.
    #[serde(with = "humantime_serde")]
    pub backlog_wait: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Jobs handled at once by one worker process.
    pub concurrency: usize,
    /// Groups refreshed by one SQL query and one Redis pipeline.
    pub batch_size: usize,
    /// How long a batch waits to fill before it runs anyway.
    #[serde(with = "humantime_serde")]
    pub batch_wait: Duration,
    /// Database connections per worker process.
    pub db_pool: u32,
    /// Queue heartbeat; a worker silent for `heartbeat × missed_heartbeats` has its jobs re-run.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    pub missed_heartbeats: usize,
    /// How often an idle worker looks for new jobs.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Tries of a batch, in process, when the database or Redis fails transiently (backoff
    /// doubling from `retry_backoff`, with jitter) before its jobs go back to the queue.
    pub retry_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Deliveries of one job before it goes to the dead letter.
    pub max_attempts: u32,
    /// Consecutive failed refreshes of one group (its rows break the query) before it is
    /// quarantined: served from its last snapshot, flagged, and retried only every
    /// `quarantine_retry`.
    pub quarantine_after: u32,
    #[serde(with = "humantime_serde")]
    pub quarantine_retry: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadSettings {
    pub listen: String,
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Upper bound on one HTTP request, Redis included.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// What a MISS or a STALE read does besides answering: ask the workers for a refresh.
    pub on_miss: OnMiss,
    /// How long a MISS waits for the refresh it asked for before answering (0: not at all).
    #[serde(with = "humantime_serde")]
    pub miss_wait: Duration,
    /// Refreshes one read process may enqueue per second, whatever readers ask for.
    pub refresh_rate: u32,
    /// How long a read process keeps an in-memory copy of a snapshot it read (0: never). Copies
    /// are dropped at once when a worker writes the group; this bounds them if a message is lost.
    #[serde(with = "humantime_serde")]
    pub local_ttl: Duration,
    /// Serve the web board (`/`) on the public listener. It reads only the public API.
    pub ui: bool,
    /// The admin listener: the operations page (`/ops`), `/v1/status` and `/metrics`, which tell
    /// internal state and belong on a private network. Loopback by default.
    pub admin_listen: String,
    /// Origins whose pages may call the public API from a browser (`https://game.example`, or
    /// `*` for any); empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Requests the public listener works on at once; past it, a 503 with `Retry-After` at once.
    pub max_in_flight: usize,
    /// Connections the public listener holds open at once; past it, new ones wait in the
    /// kernel's backlog.
    pub max_connections: usize,
    /// Requests per second one client may make (0: no per-client limit), with bursts of up to
    /// `client_burst`; past it, a 429 with `Retry-After`.
    pub client_rate: u32,
    pub client_burst: u32,
    /// Who a client is, for `client_rate`: the TCP peer, or the last address in
    /// `X-Forwarded-For` (the one the nearest proxy added), for a tier behind a load balancer.
    pub client_ip: ClientIp,
    /// How long a connection may take to send its first bytes or a request's headers, stay idle
    /// between HTTP/1 requests, or leave an HTTP/2 ping unanswered; a slow or silent client is
    /// disconnected past it.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Memory the in-memory copies (`local_ttl`) may take, in bytes ("64MiB"); the least
    /// recently kept are dropped past it.
    pub local_max_bytes: bytesize::ByteSize,
}

/// `read.client_ip`: how a client is told apart for `read.client_rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIp {
    /// The address of the TCP peer.
    #[default]
    Peer,
    /// The last address of `X-Forwarded-For`, else the peer: right behind a proxy that appends
    /// the address it saw, wrong (spoofable) without one.
    XForwardedFor,
}

/// `read.on_miss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnMiss {
    /// Enqueue a coalesced refresh of the group (not again for an hour once a worker has found it
    /// absent from the source).
    #[default]
    Refresh,
    /// Only answer.
    None,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: None,
            redis_url: "redis://127.0.0.1:6379".into(),
            namespace: "ranq".into(),
            log_format: None,
            shutdown_timeout: Duration::from_secs(30),
            metrics_listen: None,
            redis: RedisSettings::default(),
            source: SourceSettings::default(),
            producer: ProducerSettings {
                schedule: "0 * * * * *".into(),
                mode: ProducerMode::All,
                sweep_every: 10,
                lease_ttl: Duration::from_secs(10),
                enqueue_chunk: 1_000,
                max_backlog: 4_000,
                backlog_wait: Duration::from_secs(20),
            },
            worker: WorkerSettings {
                concurrency: 256,
                batch_size: 128,
                batch_wait: Duration::from_millis(5),
                db_pool: 4,
                heartbeat: Duration::from_secs(2),
                missed_heartbeats: 3,
                poll_interval: Duration::from_millis(50),
                retry_attempts: 4,
                retry_backoff: Duration::from_millis(100),
                max_attempts: 8,
                quarantine_after: 3,
                quarantine_retry: Duration::from_secs(600),
            },
            read: ReadSettings {
                listen: "127.0.0.1:8080".into(),
                stale_after: Duration::from_secs(90),
                max_age: Duration::from_secs(600),
                request_timeout: Duration::from_secs(5),
                on_miss: OnMiss::Refresh,
                miss_wait: Duration::ZERO,
                refresh_rate: 100,
                local_ttl: Duration::from_secs(1),
                ui: true,
                admin_listen: "127.0.0.1:8081".into(),
                cors_origins: Vec::new(),
                max_in_flight: 1_024,
                max_connections: 10_000,
                client_rate: 0,
                client_burst: 50,
                client_ip: ClientIp::Peer,
                header_timeout: Duration::from_secs(10),
                local_max_bytes: bytesize::ByteSize::mib(64),
            },
        }
    }
}

impl Settings {
    /// Values that parse but make no sense, as one line naming the key, the rule and the
    /// default. (The Redis URL is checked where Redis is known: `ranq_redis::check_url`.)
    pub fn validate(&self) -> Result<(), String> {
        let d = Settings::default();
        let bad = |key: &str, why: String| Err(format!("invalid configuration: {key} {why}"));
        if self.namespace.is_empty() || self.namespace.contains(['{', '}', ' ']) {
            return bad("namespace", format!("must be non-empty, without spaces or braces (e.g. {:?})", d.namespace));
        }
        let (w, dw) = (&self.worker, &d.worker);
        if w.batch_size == 0 {
            return bad("worker.batch_size", format!("must be at least 1 (default {})", dw.batch_size));
        }
        if w.concurrency == 0 {
            return bad("worker.concurrency", format!("must be at least 1 (default {})", dw.concurrency));
        }
        if w.max_attempts == 0 || w.retry_attempts == 0 {
            return bad(
                "worker.max_attempts",
                format!(
                    "and worker.retry_attempts must be at least 1 (defaults {} and {})",
                    dw.max_attempts, dw.retry_attempts
                ),
            );
        }
        if w.quarantine_after == 0 {
            return bad("worker.quarantine_after", format!("must be at least 1 (default {})", dw.quarantine_after));
        }
        if self.read.stale_after > self.read.max_age {
            return bad("read.stale_after", "must not exceed read.max_age".into());
        }
        let (r, dr) = (&self.read, &d.read);
        if r.max_in_flight == 0 || r.max_connections == 0 {
            return bad(
                "read.max_in_flight",
                format!(
                    "and read.max_connections must be at least 1 (defaults {} and {})",
                    dr.max_in_flight, dr.max_connections
                ),
            );
        }
        if r.client_rate > 0 && r.client_burst == 0 {
            return bad("read.client_burst", format!("must be at least 1 (default {})", dr.client_burst));
        }
        if r.header_timeout.is_zero() {
            return bad(
                "read.header_timeout",
                format!("must be more than 0s (default {})", humantime::format_duration(dr.header_timeout)),
            );
        }
        for origin in &r.cors_origins {
            if let Err(why) = check_origin(origin) {
                return bad("read.cors_origins", format!("entry {origin:?} {why}"));
            }
        }
        let most = tokio::sync::Semaphore::MAX_PERMITS;
        if r.max_in_flight > most || r.max_connections > most {
            return bad("read.max_in_flight", format!("and read.max_connections must be at most {most}"));
        }
        if !r.local_ttl.is_zero() && r.local_max_bytes.as_u64() == 0 {
            return bad(
                "read.local_max_bytes",
                format!(
                    "must be more than 0 while read.local_ttl is set (default {}); set read.local_ttl = \"0s\" to keep no copies",
                    dr.local_max_bytes
                ),
            );
        }
        let (p, dp) = (&self.producer, &d.producer);
        if p.enqueue_chunk == 0 || p.max_backlog < p.enqueue_chunk {
            return bad(
                "producer.max_backlog",
                format!(
                    "must be at least producer.enqueue_chunk (defaults {} and {})",
                    dp.max_backlog, dp.enqueue_chunk
                ),
            );
        }
        if p.lease_ttl < Duration::from_secs(1) {
            return bad(
                "producer.lease_ttl",
                format!("must be at least 1s (default {})", humantime::format_duration(dp.lease_ttl)),
            );
        }
        if self.redis.tls_cert_file.is_some() != self.redis.tls_key_file.is_some() {
            return bad("redis.tls_cert_file", "and redis.tls_key_file go together: set both, or neither".into());
        }
        for (key, path) in [
            ("redis.tls_ca_file", &self.redis.tls_ca_file),
            ("redis.tls_cert_file", &self.redis.tls_cert_file),
            ("redis.tls_key_file", &self.redis.tls_key_file),
        ] {
            if let Some(path) = path.as_ref().filter(|p| !p.is_file()) {
                return bad(key, format!("{} is not a readable file", path.display()));
            }
        }
        if let Some(url) = &self.database_url
            && !["postgres://", "postgresql://", "mysql://", "mariadb://", "sqlite:"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
        {
            return bad(
                "database_url",
                "must be postgres://user@host/db, mysql://user@host/db (or mariadb://…) or sqlite:path/to/file.db"
                    .into(),
            );
        }
        Ok(())
    }
}

/// `*`, or an origin exactly as a browser sends it in `Origin` (the CORS layer compares bytes):
/// `scheme://host[:port]`, the host in lower case, no default port, no path, no wildcard.
fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let usage = "is not an origin: write scheme://host[:port] with no path (one entry per origin), or \"*\" alone";
    if origin.contains('*') {
        return Err(format!("{usage}; origins have no wildcards"));
    }
    let url = url::Url::parse(origin).map_err(|_| usage.to_owned())?;
    let exact = url.origin().ascii_serialization();
    if !url.origin().is_tuple() {
        return Err(usage.to_owned());
    }
    if exact != origin {
        return Err(format!("is not an origin as browsers send it: write {exact:?}"));
    }
    Ok(())
}

impl ReadSettings {
    pub fn freshness(&self) -> FreshnessPolicy {
        FreshnessPolicy { stale_after: self.stale_after, max_age: self.max_age }
    }
}

/// Values given on the command line (or by their env fallbacks in clap). `None` leaves the lower
/// layers in charge. Serialised as a nested map so figment merges it like any other source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Per-command flags, by top-level key (`metrics_listen`) or section (`producer` → a map of
    /// `schedule` …).
    #[serde(flatten)]
    pub others: std::collections::BTreeMap<String, figment::value::Value>,
}

impl Overrides {
    /// Records the setting `key` (dotted, as in the file: `producer.schedule`) if it was given.
    pub fn set<V: Serialize>(&mut self, key: &str, value: Option<V>) {
        let Some(value) = value.and_then(|v| figment::value::Value::serialize(v).ok()) else { return };
        self.insert(key, value);
    }

    /// Records the setting `key` from its text on the command line, read as figment reads the
    /// environment (`256` a number, `5ms` a string), so that the settings' own types decide.
    pub fn set_text(&mut self, key: &str, text: &str) {
        let value: figment::value::Value = text.parse().unwrap_or_else(|never| match never {});
        self.insert(key, value);
    }

    fn insert(&mut self, key: &str, value: figment::value::Value) {
        use figment::value::{Dict, Value};
        match key.split_once('.') {
            None => {
                self.others.insert(key.to_owned(), value);
            }
            Some((section, key)) => {
                let entry = self.others.entry(section.to_owned()).or_insert_with(|| Value::from(Dict::new()));
                if let Value::Dict(_, dict) = entry {
                    dict.insert(key.to_owned(), value);
                }
            }
        }
    }
}

impl Settings {
    /// The built-in default of the setting `key` (dotted), as a user would write it; `None` for
    /// a setting without one (`database_url`, `log_format`).
    pub fn default_text(key: &str) -> Option<String> {
        let value = figment::value::Value::serialize(Settings::default()).ok()?;
        let found = key.split('.').try_fold(&value, |node, part| match node {
            figment::value::Value::Dict(_, dict) => dict.get(part),
            _ => None,
        })?;
        match found {
            figment::value::Value::String(_, text) => Some(text.clone()),
            figment::value::Value::Empty(..) => None,
            other => serde_json::to_string(other).ok(),
        }
    }
}

/// A configuration problem: always the user's to fix, always exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: not found (pass an existing file to --config or unset RANQ_CONFIG)")]
    MissingFile { path: PathBuf },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads settings from every layer. `config` is `--config`/`RANQ_CONFIG`; when it is `None`,
    /// `config/default.toml` is read if it exists.
    pub fn load(config: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::figment(config, overrides)?.extract().map_err(|e| ConfigError::Invalid(describe(&e)))
    }

    fn figment(config: Option<&Path>, overrides: &Overrides) -> Result<Figment, ConfigError> {
        let layers = Layers::new(config, overrides)?;
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = layers.file {
            figment = figment.merge(file);
        }
        Ok(figment.merge(layers.env).merge(layers.flags))
    }

    /// Every setting's effective value and the layer it came from, for `ranq config show`.
    /// URLs are returned as given; redacting them is the caller's job.
    pub fn explain(config: Option<&Path>, overrides: &Overrides) -> Result<Vec<Explained>, ConfigError> {
        let settings = Self::load(config, overrides)?;
        let layers = Layers::new(config, overrides)?;
        let flags = Figment::from(layers.flags);
        let env = Figment::from(layers.env);
        let file = layers.file.map(Figment::from);
        let value = figment::value::Value::serialize(&settings).map_err(|e| ConfigError::Invalid(describe(&e)))?;
        let mut leaves = Vec::new();
        flatten("", &value, &mut leaves);
        Ok(leaves
            .into_iter()
            .map(|(key, value)| {
                let origin = if flags.find_value(&key).is_ok() {
                    Origin::Flag
                } else if env.find_value(&key).is_ok() {
                    Origin::Env(format!("RANQ_{}", key.replace('.', "__").to_ascii_uppercase()))
                } else if file.as_ref().is_some_and(|f| f.find_value(&key).is_ok()) {
                    Origin::File(layers.file_path.clone().unwrap_or_default())
                } else {
                    Origin::Default
                };
                Explained { key, value, origin }
            })
            .collect())
    }
}

/// The layers above the built-in defaults, kept apart so `explain` can ask each one.
struct Layers {
    file: Option<figment::providers::Data<Toml>>,
    file_path: Option<PathBuf>,
    env: Env,
    flags: Serialized<Overrides>,
}

impl Layers {
    fn new(config: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let file_path = match config {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile { path: path.to_owned() }),
            Some(path) => Some(path.to_owned()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
        };
        // RANQ_CONFIG names the file and is not a setting; RANQ_TEST_* is reserved for the test
        // suite's service URLs. The URL settings are read by the command-line layer (with their
        // contract names DATABASE_URL and REDIS_URL).
        let env = Env::prefixed("RANQ_")
            .split("__")
            .ignore(&["CONFIG"])
            .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"));
        Ok(Self {
            file: file_path.as_deref().map(Toml::file),
            file_path,
            env,
            flags: Serialized::defaults(overrides.clone()),
        })
    }
}

/// One setting as `ranq config show` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct Explained {
    /// Dotted key, as in the TOML file (`read.max_age`).
    pub key: String,
    /// The effective value; `None` for an optional setting left unset.
    pub value: Option<figment::value::Value>,
    pub origin: Origin,
}

/// The layer a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    /// The variable's name.
    Env(String),
    /// A command-line flag, or the environment variable clap reads for it (`REDIS_URL`…); only
    /// the command line can tell which.
    Flag,
}

/// Dotted paths to every leaf of a settings tree, in the tree's order; an unset optional setting
/// is a leaf without a value.
fn flatten(prefix: &str, value: &figment::value::Value, out: &mut Vec<(String, Option<figment::value::Value>)>) {
    use figment::value::Value;
    match value {
        Value::Dict(_, dict) => {
            for (key, value) in dict {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&path, value, out);
            }
        }
        Value::Empty(..) => out.push((prefix.to_owned(), None)),
        leaf => out.push((prefix.to_owned(), Some(leaf.clone()))),
    }
}

/// Turns figment's error into one line naming the key and the problem.
fn describe(error: &figment::Error) -> String {
    let mut out = String::new();
    for e in error.clone() {
        if !out.is_empty() {
            out.push_str("; ");
        }
        if let figment::error::Kind::UnknownField(field, expected) = &e.kind {
            out.push_str(&unknown_key(&e, field, expected));
            continue;
        }
        let key = e.path.join(".");
        let source = e.metadata.as_ref().map(|m| {
            if m.name.contains("environment") && !key.is_empty() {
                format!("RANQ_{}", key.replace('.', "__").to_ascii_uppercase())
            } else {
                m.name.to_string()
            }
        });
        let kind = e.kind.to_string();
        match (key.is_empty(), source) {
            (false, Some(src)) => out.push_str(&format!("{key} (from {src}): {kind}")),
            (false, None) => out.push_str(&format!("{key}: {kind}")),
            (true, Some(src)) => out.push_str(&format!("{kind} (from {src})")),
            (true, None) => out.push_str(&kind),
        }
    }
    out
}

/// "unknown key read.stale_aftre (from RANQ_READ__STALE_AFTRE); did you mean read.stale_after?"
fn unknown_key(e: &figment::Error, field: &str, expected: &[&str]) -> String {
    // figment's path for an unknown field ends with the field itself.
    let section: Vec<&str> = e.path.iter().map(String::as_str).take(e.path.len().saturating_sub(1)).collect();
    let dotted = |name: &str| section.iter().copied().chain([name]).collect::<Vec<_>>().join(".");
    let key = dotted(field);
    let from = match &e.metadata {
        Some(m) if m.name.contains("environment") => {
            format!(" (from RANQ_{})", key.replace('.', "__").to_ascii_uppercase())
        }
        Some(m) => m.source.as_ref().map_or_else(|| format!(" (from {})", m.name), |s| format!(" (from {s})")),
        None => String::new(),
    };
    match nearest(field, expected) {
        Some(best) => format!("unknown key {key}{from}; did you mean {}?", dotted(best)),
        None => format!("unknown key {key}{from}; valid keys here: {}", expected.join(", ")),
    }
}

/// The valid key a typo most likely meant, if any is close enough to be a useful guess.
fn nearest<'a>(typo: &str, valid: &[&'a str]) -> Option<&'a str> {
    let typo = typo.to_ascii_lowercase();
    valid
        .iter()
        .map(|v| (strsim::jaro_winkler(&typo, v), *v))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, v)| v)
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error by design.
mod tests {
    use super::*;
    use figment::Jail;

    /// Loads inside a jail whose environment holds only what the test sets (the developer's own
    /// `RANQ_*` variables must not leak in).
    fn load_in_jail(jail: &Jail, overrides: &Overrides) -> Result<Settings, ConfigError> {
        let _ = jail;
        Settings::load(None, overrides)
    }

    #[test]
    fn defaults_match_the_contract() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let s = load_in_jail(jail, &Overrides::default()).expect("defaults load");
            assert_eq!(s.redis_url, "redis://127.0.0.1:6379");
            assert_eq!(s.namespace, "ranq");
            assert_eq!(s.producer.schedule, "0 * * * * *");
            assert_eq!(s.producer.sweep_every, 10);
            assert_eq!((s.worker.concurrency, s.worker.batch_size), (256, 128));
            assert_eq!(s.worker.batch_wait, Duration::from_millis(5));
            assert_eq!(s.read.listen, "127.0.0.1:8080");
            assert_eq!(s.read.stale_after, Duration::from_secs(90));
            assert_eq!(s.read.max_age, Duration::from_secs(600));
            assert_eq!(s.shutdown_timeout, Duration::from_secs(30));
            Ok(())
        });
    }

    #[test]
    fn cors_origins_are_checked_as_browsers_send_them() {
        for good in
            ["*", "https://game.example", "http://localhost:3000", "http://[::1]:8080", "https://xn--bcher-kva.example"]
        {
            assert_eq!(check_origin(good), Ok(()), "{good}");
        }
        let why = |o: &str| check_origin(o).expect_err("refused");
        assert!(why("https://Game.example").contains("\"https://game.example\""), "{}", why("https://Game.example"));
        assert!(why("https://game.example:443").contains("\"https://game.example\""));
        assert!(why("https://game.example/").contains("\"https://game.example\""));
        assert!(why("https://*.game.example").contains("no wildcards"));
        assert!(why("game.example").contains("is not an origin"));
        assert!(why("https://game.example/board").contains("write \"https://game.example\""));
        assert!(why("file:///etc").contains("is not an origin"));
    }

    #[test]
    fn flag_beats_env_beats_file() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_dir("config")?;
            jail.create_file(
                DEFAULT_CONFIG_PATH,
                "namespace = \"file\"\n[read]\nstale_after = \"10s\"\nmax_age = \"1m\"\n",
            )?;
            jail.set_env("RANQ_READ__STALE_AFTER", "2s");
            jail.set_env("RANQ_NAMESPACE", "env");
            let mut flags = Overrides { namespace: Some("flag".into()), ..Overrides::default() };
            flags.set("producer.schedule", Some("*/2 * * * * *"));
            let s = load_in_jail(jail, &flags).expect("loads");
            assert_eq!(s.namespace, "flag");
            assert_eq!(s.read.stale_after, Duration::from_secs(2));
            assert_eq!(s.read.max_age, Duration::from_secs(60));
            assert_eq!(s.producer.schedule, "*/2 * * * * *");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_errors_naming_the_key() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("RANQ_READ__STALE_AFTRE", "2s");
            let err = load_in_jail(jail, &Overrides::default()).expect_err("typo rejected").to_string();
            assert!(err.contains("unknown key read.stale_aftre (from RANQ_READ__STALE_AFTRE)"), "{err}");
            assert!(err.ends_with("did you mean read.stale_after?"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_dir("config")?;
            jail.create_file(DEFAULT_CONFIG_PATH, "[worker]\nbatchsize = 64\n")?;
            let err = load_in_jail(jail, &Overrides::default()).expect_err("typo rejected").to_string();
            assert!(err.contains("unknown key worker.batchsize (from config/default.toml"), "{err}");
            assert!(err.ends_with("did you mean worker.batch_size?"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("RANQ_ZZZ", "1");
            let err = load_in_jail(jail, &Overrides::default()).expect_err("unknown key").to_string();
            assert!(err.contains("unknown key zzz (from RANQ_ZZZ); valid keys here: database_url,"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("RANQ_READ__MAX_AGE", "ten minutes");
            let err = load_in_jail(jail, &Overrides::default()).expect_err("bad duration").to_string();
            assert!(err.contains("read.max_age"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn explain_names_the_layer_each_value_came_from() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_dir("config")?;
            jail.create_file(DEFAULT_CONFIG_PATH, "namespace = \"file\"\n[read]\nmax_age = \"1m\"\n")?;
            jail.set_env("RANQ_READ__MAX_AGE", "2m");
            let mut flags = Overrides { redis_url: Some("redis://elsewhere:6379".into()), ..Overrides::default() };
            flags.set("producer.schedule", Some("*/2 * * * * *"));
            let all = Settings::explain(None, &flags).expect("explains");
            let find = |key: &str| all.iter().find(|e| e.key == key).unwrap_or_else(|| panic!("{key} listed"));
            assert_eq!(find("namespace").origin, Origin::File(DEFAULT_CONFIG_PATH.into()));
            assert_eq!(find("read.max_age").origin, Origin::Env("RANQ_READ__MAX_AGE".into()));
            assert_eq!(find("redis_url").origin, Origin::Flag);
            assert_eq!(find("producer.schedule").origin, Origin::Flag);
            assert_eq!(find("read.stale_after").origin, Origin::Default);
            assert_eq!((find("database_url").value.as_ref(), &find("database_url").origin), (None, &Origin::Default));
            assert_eq!(find("read.max_age").value.as_ref().and_then(|v| v.as_str()), Some("2m"));
            let mut keys: Vec<&str> = all.iter().map(|e| e.key.as_str()).collect();
            keys.dedup();
            assert_eq!(keys.len(), all.len(), "each key once: {keys:?}");
            Ok(())
        });
    }

    #[test]
    fn the_test_suites_variables_are_not_settings() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("RANQ_TEST_REDIS_URL", "redis://127.0.0.1:1");
            load_in_jail(jail, &Overrides::default()).expect("RANQ_TEST_* is ignored");
            Ok(())
        });
    }

    #[test]
    fn flags_given_as_text_take_the_settings_types() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let mut flags = Overrides::default();
            flags.set_text("worker.batch_size", "64");
            flags.set_text("worker.batch_wait", "7ms");
            flags.set_text("producer.mode", "dirty");
            flags.set_text("metrics_listen", "127.0.0.1:9108");
            let s = load_in_jail(jail, &flags).expect("loads");
            assert_eq!((s.worker.batch_size, s.worker.batch_wait), (64, Duration::from_millis(7)));
            assert_eq!(s.producer.mode, ProducerMode::Dirty);
            assert_eq!(s.metrics_listen.as_deref(), Some("127.0.0.1:9108"));
            Ok(())
        });
    }

    #[test]
    fn defaults_are_shown_as_a_user_writes_them() {
        assert_eq!(Settings::default_text("worker.batch_wait").as_deref(), Some("5ms"));
        assert_eq!(Settings::default_text("worker.concurrency").as_deref(), Some("256"));
        assert_eq!(Settings::default_text("read.listen").as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(Settings::default_text("database_url"), None);
        assert_eq!(Settings::default_text("no.such_key"), None);
    }

    #[test]
    fn a_missing_explicit_config_file_is_an_error() {
        let err = Settings::load(Some(Path::new("/nonexistent/ranq.toml")), &Overrides::default());
        assert!(matches!(err, Err(ConfigError::MissingFile { .. })));
    }
}
