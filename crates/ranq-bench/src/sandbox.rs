//! What every bench shares: the lab (settings and the `ranq` binary to run roles from), the
//! sandbox each bench works in (a Postgres schema and a Redis namespace of its own, removed when
//! it ends), and the fleet of `ranq` child processes a bench starts in it.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use ranq_cache::Cache;
use ranq_core::{Keys, Version};
use ranq_db::{SeedOptions, Source};
use ranq_launch::Launcher;
use ranq_redis::Redis;
use ranq_runtime::{GlobalArgs, Settings, UsageError};
use tokio::process::Child;

/// The settings every bench runs with, and the `ranq` binary its roles run from.
#[derive(Debug)]
pub struct Lab {
    pub settings: Settings,
    pub ranq: PathBuf,
}

impl Lab {
    /// Layers settings as `ranq` does (defaults < file < env < flags) and finds `ranq` beside
    /// this binary.
    pub fn load(global: &GlobalArgs) -> anyhow::Result<Self> {
        let settings = Settings::load(global.config.as_deref(), &global.overrides())?;
        settings.validate().map_err(UsageError)?;
        ranq_redis::check_url(&settings.redis_url)
            .map_err(|why| UsageError(format!("invalid configuration: redis_url {why}")))?;
        let ranq = ranq_launch::sibling_exe("ranq").map_err(|e| UsageError(e.to_string()))?;
        Ok(Self { settings, ranq })
    }

    /// The server URL the benches need: Postgres, or MySQL/MariaDB.
    fn server_url(&self) -> Result<&str, UsageError> {
        match self.settings.database_url.as_deref() {
            Some(url) if ["postgres", "mysql://", "mariadb://"].iter().any(|s| url.starts_with(s)) => Ok(url),
            _ => Err(UsageError(
                "ranq-bench needs a Postgres or MySQL/MariaDB DATABASE_URL (it works in a schema or database of its \
                 own): pass --database-url postgres://… or mysql://…"
                    .into(),
            )),
        }
    }
}

/// Where a sandbox's tables live, and the connection that removes them.
enum Corner {
    /// A schema of the lab's Postgres database.
    PgSchema(sqlx::PgPool),
    /// A database of the lab's MySQL/MariaDB server.
    MySqlDatabase(sqlx::MySqlPool),
}

/// A bench's private corner of the database and of Redis.
pub struct Sandbox {
    admin: Corner,
    /// The schema (Postgres) or database (MySQL/MariaDB) of the bench's tables.
    schema: String,
    /// The bench's database: the lab's, with `search_path` set to the sandbox's schema, or the
    /// sandbox's own database on the same server.
    pub database_url: String,
    pub namespace: String,
    pub redis: Redis,
    pub cache: Cache,
}

impl Sandbox {
    pub async fn create(lab: &Lab) -> anyhow::Result<Self> {
        let url = lab.server_url()?;
        let tag = format!("{}_{}", std::process::id(), Utc::now().timestamp_millis());
        let schema = format!("ranq_bench_{tag}");
        let unreachable = |e| anyhow::anyhow!("cannot connect to the database at {}: {e}", ranq_core::redact_url(url));
        let (admin, database_url) = if url.starts_with("postgres") {
            let admin = sqlx::PgPool::connect(url).await.map_err(unreachable)?;
            sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin).await?;
            let separator = if url.contains('?') { '&' } else { '?' };
            (Corner::PgSchema(admin), format!("{url}{separator}options=-c%20search_path%3D{schema}"))
        } else {
            let admin = sqlx::MySqlPool::connect(url).await.map_err(unreachable)?;
            sqlx::query(&format!("CREATE DATABASE {schema}")).execute(&admin).await?;
            let mut database_url = url::Url::parse(url)?;
            database_url.set_path(&schema);
            (Corner::MySqlDatabase(admin), database_url.to_string())
        };
        let namespace = format!("{}-bench-{tag}", lab.settings.namespace);
        let redis = Redis::connect_with(&lab.settings.redis_url, &lab.settings.redis).await?;
        let cache = Cache::new(redis.clone(), Keys::new(namespace.clone()));
        Ok(Self { admin, schema, database_url, namespace, redis, cache })
    }

    /// A cache in a namespace of its own below the sandbox's (`<ns>:<name>`), so that the runs
    /// of one bench never see each other's keys.
    pub fn cache_in(&self, name: &str) -> Cache {
        Cache::new(self.redis.clone(), Keys::new(format!("{}:{name}", self.namespace)))
    }

    /// A migrated, seeded source in the sandbox, with a progress bar.
    pub async fn seeded_source(&self, groups: u32, members: u32, pool: u32) -> anyhow::Result<Source> {
        let source = Source::connect(&self.database_url, pool).await?;
        source.migrate().await?;
        let bar = ranq_runtime::progress::bar("seeding", u64::from(groups), "groups");
        let options = SeedOptions { groups, members, seed: 42, replace: false };
        let report = source.seed(options, &|done| bar.set_position(done)).await;
        bar.finish_and_clear();
        report?;
        Ok(source)
    }

    /// Roles of the lab's `ranq` on the sandbox's database, Redis and `namespace`, logging JSON
    /// at `warn` so that their lines stay few. Other `RANQ_*` settings are inherited from this
    /// process, so `RANQ_WORKER__*` tunes a bench's workers too.
    pub fn launcher(&self, lab: &Lab, namespace: &str) -> Launcher {
        Launcher::new(&lab.ranq, Some(&self.database_url), &lab.settings.redis_url, namespace)
            .var("RANQ_LOG_FORMAT", "json")
            .var("RUST_LOG", "warn")
            // Any number of read servers at once, each with an admin port of its own.
            .var("RANQ_READ__ADMIN_LISTEN", "127.0.0.1:0")
    }

    /// The address of the sandbox's database server, for a proxy to stand in front of.
    pub async fn database_addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        let parsed = url::Url::parse(&self.database_url).map_err(|e| UsageError(format!("DATABASE_URL: {e}")))?;
        let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
        let default_port = if parsed.scheme().starts_with("postgres") { 5432 } else { 3306 };
        tokio::net::lookup_host((host.as_str(), parsed.port().unwrap_or(default_port)))
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("cannot resolve the database host {host}"))
    }

    /// Starts `ranq <args>` in the sandbox's namespace, its output discarded.
    pub fn spawn_role(&self, lab: &Lab, args: &[&str]) -> anyhow::Result<Child> {
        spawn_quiet(&self.launcher(lab, &self.namespace), args)
    }

    async fn remove(self) {
        let _ = self.redis.unlink_matching(&format!("{}:*", self.namespace)).await;
        match self.admin {
            Corner::PgSchema(admin) => {
                let _ = sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema)).execute(&admin).await;
                admin.close().await;
            }
            Corner::MySqlDatabase(admin) => {
                let _ = sqlx::query(&format!("DROP DATABASE {}", self.schema)).execute(&admin).await;
                admin.close().await;
            }
        }
    }
}

/// Starts `<launcher> <args>` with its output discarded.
pub fn spawn_quiet(launcher: &Launcher, args: &[&str]) -> anyhow::Result<Child> {
    launcher
        .tokio_command(args)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start `ranq {}`: {e}", args.join(" ")))
}

/// Runs `bench` in a sandbox of its own, removes the sandbox whatever happened, then prints the
/// report and, when asked, writes it as JSON to `json`.
pub async fn in_sandbox<R: serde::Serialize>(
    lab: &Lab,
    json: Option<&Path>,
    bench: impl AsyncFnOnce(&Sandbox) -> anyhow::Result<R>,
    print: fn(&R),
) -> anyhow::Result<ExitCode> {
    let sandbox = Sandbox::create(lab).await?;
    let result = bench(&sandbox).await;
    sandbox.remove().await;
    let report = result?;
    print(&report);
    if let Some(path) = json {
        write_json(path, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a report as pretty JSON, and says so.
pub fn write_json(path: &Path, report: &impl serde::Serialize) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(report)?)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// How a bench waits for its workers: until a count reaches its target, failing at once if a
/// worker dies, and after `timeout` at the latest.
pub struct Watch<'a> {
    pub workers: &'a mut [Child],
    pub timeout: Duration,
    pub progress: Option<&'a indicatif::ProgressBar>,
}

impl Watch<'_> {
    /// Polls `count` every 10 ms until it reaches `target`; `what` names the count in the error.
    pub async fn until<F, Fut>(&mut self, what: &str, target: u64, mut count: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<u64>>,
    {
        let deadline = Instant::now() + self.timeout;
        loop {
            let done = count().await?;
            if let Some(bar) = self.progress {
                bar.set_position(done);
            }
            if done >= target {
                return Ok(());
            }
            ensure_alive(self.workers)?;
            anyhow::ensure!(Instant::now() < deadline, "{what}: {done} of {target} after {:?}", self.timeout);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Until `groups` cached groups hold a snapshot read after `since`, counted on the index (one
    /// command, however many groups).
    pub async fn refreshed(&mut self, cache: &Cache, groups: u64, since: Version) -> anyhow::Result<()> {
        self.until("groups refreshed", groups, || async { Ok(cache.count_refreshed_since(since).await?) }).await
    }
}

/// Fails as soon as one of the bench's worker processes has exited: waiting on would only end at
/// the phase's timeout.
pub fn ensure_alive(workers: &mut [Child]) -> anyhow::Result<()> {
    for worker in workers.iter_mut() {
        if let Some(status) = worker.try_wait()? {
            anyhow::bail!("a worker died during the benchmark ({status}); run one by hand to see why");
        }
    }
    Ok(())
}

/// Redis's `used_memory`, in bytes.
pub async fn redis_used_memory(redis: &Redis) -> anyhow::Result<u64> {
    Ok(redis.info("memory").await?.get("used_memory").and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// The resident set sizes of `children`, in KiB.
pub fn rss_of(children: &[Child]) -> Vec<u64> {
    children.iter().filter_map(Child::id).map(rss_kib).collect()
}

/// A process's resident set size in KiB, from /proc (0 if it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")).map(str::to_owned))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}
