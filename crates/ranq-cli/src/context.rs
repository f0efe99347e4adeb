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
}

impl Context {
    /// Layers settings: defaults < file < env < flags (including the per-command flags).
    pub fn load(cli: &Cli) -> anyhow::Result<Self> {
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
        Ok(Self { settings })
    }

    /// The source URL, required by the commands that read the source.
    pub fn database_url(&self) -> Result<&str, UsageError> {
        self.settings.database_url.as_deref().ok_or_else(|| {
            UsageError(
                "no source database: pass --database-url postgres://… (or sqlite:file.db), or set DATABASE_URL".into(),
            )
        })
    }

    pub async fn source(&self, pool: u32) -> anyhow::Result<Source> {
        Ok(Source::connect(self.database_url()?, pool).await?)
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
    if s.read.stale_after > s.read.max_age {
        return bad("read.stale_after", "must not exceed read.max_age");
    }
    if s.producer.enqueue_chunk == 0 || s.producer.max_backlog < s.producer.enqueue_chunk {
        return bad("producer.max_backlog", "must be at least producer.enqueue_chunk (defaults 4000 and 1000)");
    }
    if s.producer.lease_ttl < std::time::Duration::from_secs(1) {
        return bad("producer.lease_ttl", "must be at least 1s (default 10s)");
    }
    if let Err(e) = ranq_producer::parse_schedule(&s.producer.schedule) {
        return Err(UsageError(e));
    }
    Ok(())
}
