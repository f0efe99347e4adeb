//! Settings and connections as the commands need them, with the one-line errors that tell a user
//! what to fix.

use ranq_cache::Cache;
use ranq_core::Keys;
use ranq_db::Source;
use ranq_queue::Queue;
use ranq_redis::Redis;
use ranq_runtime::{Overrides, Settings, UsageError};

use crate::cli::Cli;

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
    pub fn load(cli: &Cli, matches: &clap::ArgMatches, from_env: Vec<&'static str>) -> anyhow::Result<Self> {
        let mut o = cli.global.overrides();
        ranq_runtime::edge::setting_overrides(&mut o, matches, crate::cli::SETTING_FLAGS);
        let settings = Settings::load(cli.global.config.as_deref(), &o)?;
        settings.validate().map_err(UsageError)?;
        ranq_redis::check_url(&settings.redis_url)
            .map_err(|why| UsageError(format!("invalid configuration: redis_url {why}")))?;
        ranq_producer::parse_schedule(&settings.producer.schedule).map_err(UsageError)?;
        Ok(Self { settings, from_env, config: cli.global.config.clone(), overrides: o })
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

    /// The source as `migrate` and `seed` see it: the reference schema. A mistake in the URL or
    /// its TLS parameters is a configuration error.
    pub async fn source(&self, pool: u32) -> anyhow::Result<Source> {
        Source::connect(self.database_url()?, pool).await.map_err(|e| {
            if e.is_configuration() { anyhow::Error::new(UsageError(e.to_string())) } else { anyhow::Error::new(e) }
        })
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

    /// The Redis of `redis_url`, answering.
    pub async fn redis(&self) -> anyhow::Result<Redis> {
        connect_redis(&self.settings.redis_url, &self.settings).await
    }

    /// ranq's data in the configured namespace.
    pub async fn cache(&self) -> anyhow::Result<Cache> {
        Ok(Cache::new(self.redis().await?, Keys::new(self.settings.namespace.clone())))
    }

    /// The refresh queue beside `cache`, with the worker settings that decide who counts as alive.
    pub fn queue(&self, cache: &Cache) -> Queue {
        Queue::new(cache.redis(), cache.keys(), &self.settings.worker)
    }
}

/// Connects to the Redis at `url` with the TLS settings of `settings`, and checks that it
/// answers. A mistake in the settings (a bad URL, a certificate that does not verify) is a
/// configuration error; an unverified TLS connection is allowed only when asked for, and said.
pub async fn connect_redis(url: &str, settings: &ranq_runtime::Settings) -> anyhow::Result<Redis> {
    let redis = Redis::connect_with(url, &settings.redis).await.map_err(|e| {
        if e.is_configuration() { anyhow::Error::new(UsageError(e.to_string())) } else { anyhow::Error::new(e) }
    })?;
    if Redis::is_insecure(url, &settings.redis) {
        tracing::warn!(
            url = redis.url(),
            "TLS to Redis is not verified (redis.tls_insecure or #insecure): only for a test server"
        );
    }
    redis.ping().await.map_err(|e| {
        anyhow::anyhow!("cannot reach Redis at {}: {e} (is redis-server running, and is REDIS_URL right?)", redis.url())
    })?;
    Ok(redis)
}
