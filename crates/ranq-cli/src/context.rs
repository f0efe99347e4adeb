//! Settings and connections as the commands need them, with the one-line errors that tell a user
//! what to fix.

use ranq_cache::Cache;
use ranq_db::Source;
use ranq_runtime::{Overrides, Settings};

use crate::cli::{Cli, Command};

/// A mistake in how ranq was invoked or configured: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[derive(Debug)]
pub struct Context {
    pub settings: Settings,
    /// Setting keys of global flags whose value clap read from their environment variable.
    pub from_env: Vec<&'static str>,
    config: Option<std::path::PathBuf>,
    overrides: Overrides,
}

impl Context {
    /// Layers settings: defaults < file < env < flags (including the per-command flags).
    /// `from_env` names the global flags that clap filled from their environment variable.
    pub fn load(cli: &Cli, from_env: Vec<&'static str>) -> anyhow::Result<Self> {
        let g = &cli.global;
        let mut o = Overrides {
            database_url: g.database_url.clone(),
            redis_url: g.redis_url.clone(),
            namespace: g.namespace.clone(),
            log_format: g.log_format.map(Into::into),
            ..Overrides::default()
        };
        match &cli.command {
            Command::Producer(a) => {
                o.set("producer", "schedule", a.schedule.clone());
                o.set("producer", "mode", a.mode.map(ranq_runtime::ProducerMode::from));
                o.set("producer", "sweep_every", a.sweep_every);
                o.metrics_listen.clone_from(&a.metrics_listen);
            }
            Command::Worker(a) => {
                o.set("worker", "concurrency", a.concurrency);
                o.set("worker", "batch_size", a.batch_size);
                o.set("worker", "batch_wait", a.batch_wait.map(|d| humantime::format_duration(d).to_string()));
                o.metrics_listen.clone_from(&a.metrics_listen);
            }
            Command::Serve(a) => o.set("read", "listen", a.listen.clone()),
            _ => {}
        }
        let settings = Settings::load(g.config.as_deref(), &o)?;
        validate(&settings)?;
        Ok(Self { settings, from_env, config: g.config.clone(), overrides: o })
    }

    /// Every setting with the layer it came from (`ranq config show`).
    pub fn explain(&self) -> Result<Vec<ranq_runtime::Explained>, ranq_runtime::ConfigError> {
        Settings::explain(self.config.as_deref(), &self.overrides)
    }

    /// The source URL, required by the commands that read the source.
    pub fn database_url(&self) -> Result<&str, UsageError> {
        self.settings.database_url.as_deref().ok_or_else(|| {
            UsageError(
                "no source database: pass --database-url postgres://… (or sqlite:file.db), or set DATABASE_URL".into(),
            )
        })
    }

    /// The source as `migrate` and `seed` see it: the reference schema.
    pub async fn source(&self, pool: u32) -> anyhow::Result<Source> {
        Ok(Source::connect(self.database_url()?, pool).await?)
    }

    /// The source as the commands that read groups see it: through `[source]`'s SQL when set,
    /// checked now so a mistake there is a configuration error before any work starts.
    pub async fn reading_source(&self, pool: u32) -> anyhow::Result<Source> {
        let s = &self.settings.source;
        let custom = ranq_db::CustomSql {
            top_query: s.top_query.clone(),
            groups_query: s.groups_query.clone(),
            group_ids_query: s.group_ids_query.clone(),
        };
        let source = match self.source(pool).await?.with_custom_sql(custom).await {
            Ok(source) => source,
            Err(e @ ranq_db::DbError::CustomSql { .. }) => {
                return Err(UsageError(format!("invalid configuration: {e}")).into());
            }
            Err(e) => return Err(e.into()),
        };
        source.check_schema().await?;
        Ok(source)
    }

    /// The refresh queue, with the worker settings that decide who counts as alive.
    pub fn queue(&self, cache: &Cache) -> ranq_queue::Queue {
        let options = ranq_queue::QueueOptions {
            heartbeat: self.settings.worker.heartbeat,
            missed_heartbeats: self.settings.worker.missed_heartbeats,
            ..ranq_queue::QueueOptions::default()
        };
        ranq_queue::Queue::new(cache.connection(), cache.keys(), &options)
    }

    pub async fn cache(&self) -> anyhow::Result<Cache> {
        let cache = Cache::connect(&self.settings.redis_url, &self.settings.namespace).await?;
        cache.ping().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach Redis at {}: {e} (is redis-server running, and is REDIS_URL right?)",
                ranq_core::redact_url(&self.settings.redis_url)
            )
        })?;
        Ok(cache)
    }
}

/// Values that parse but make no sense are configuration errors too.
fn validate(s: &Settings) -> Result<(), UsageError> {
    let bad = |key: &str, why: &str| Err(UsageError(format!("invalid configuration: {key} {why}")));
    if s.namespace.is_empty() || s.namespace.contains(['{', '}', ' ']) {
        return bad("namespace", "must be non-empty, without spaces or braces (e.g. \"ranq\")");
    }
    if s.worker.batch_size == 0 {
        return bad("worker.batch_size", "must be at least 1 (default 128)");
    }
    if s.worker.concurrency == 0 {
        return bad("worker.concurrency", "must be at least 1 (default 256)");
    }
    if s.worker.max_attempts == 0 || s.worker.retry_attempts == 0 {
        return bad("worker.max_attempts", "and worker.retry_attempts must be at least 1 (defaults 8 and 4)");
    }
    if s.worker.quarantine_after == 0 {
        return bad("worker.quarantine_after", "must be at least 1 (default 3)");
    }
    if s.read.stale_after > s.read.max_age {
        return bad("read.stale_after", "must not exceed read.max_age");
    }
    if s.producer.enqueue_chunk == 0 || s.producer.max_backlog < s.producer.enqueue_chunk {
        return bad("producer.max_backlog", "must be at least producer.enqueue_chunk (defaults 4000 and 1000)");
    }
    if s.producer.lease_ttl < std::time::Duration::from_secs(1) {
        return bad("producer.lease_ttl", "must be at least 1s (default 10s)");
    }
    if redis::IntoConnectionInfo::into_connection_info(s.redis_url.as_str()).is_err() {
        return bad(
            "redis_url",
            "is not a Redis URL: use redis://host:6379/0 (or rediss:// for TLS, redis+unix:///path for a socket)",
        );
    }
    if let Some(url) = &s.database_url {
        if !["postgres://", "postgresql://", "sqlite:"].iter().any(|scheme| url.starts_with(scheme)) {
            return bad("database_url", "must be postgres://user@host/db or sqlite:path/to/file.db");
        }
    }
    if let Err(e) = ranq_producer::parse_schedule(&s.producer.schedule) {
        return Err(UsageError(e));
    }
    Ok(())
}
