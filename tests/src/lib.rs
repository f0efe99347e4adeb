//! The test harness: every test gets its own Postgres database (or SQLite file) and its own Redis
//! namespace, so the whole suite runs in parallel against one real Postgres and one real Redis.
//!
//! Services are found at `RANQ_TEST_DATABASE_URL` (an admin URL; default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and `RANQ_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`). A missing service fails the test with a message saying how to start
//! it; nothing is skipped. `scripts/test` starts them when they are absent.

#![allow(clippy::unwrap_used)] // Test support: a failed setup step should panic with its message.

pub mod browser;
pub mod process;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::NaiveDateTime;
use ranq_cache::Cache;
use ranq_core::{Entry, GroupId, RankedRow};
use ranq_db::{Pool, Source};

pub use browser::Browser;
pub use process::{Proc, ranq_bin};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn admin_url() -> String {
    std::env::var("RANQ_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("RANQ_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A unique name for this test's database and namespace.
fn unique(prefix: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// Which source database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// One test's private world: a fresh database and a fresh Redis namespace.
#[derive(Debug)]
pub struct TestEnv {
    pub database_url: String,
    pub redis_url: String,
    pub namespace: String,
    pub dir: PathBuf,
    db_name: Option<String>,
}

impl TestEnv {
    /// A fresh, migrated database of `dialect` and an empty namespace.
    pub async fn new(dialect: Dialect) -> Self {
        let name = unique("ranq_t");
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let (database_url, db_name) = match dialect {
            Dialect::Postgres => {
                let admin = admin_url();
                let pool = sqlx::PgPool::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("Postgres is required at {admin} ({e}); run scripts/test, which starts it, or set RANQ_TEST_DATABASE_URL")
                });
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await.unwrap();
                pool.close().await;
                let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
                (format!("{base}/{name}"), Some(name.clone()))
            }
            Dialect::Sqlite => (format!("sqlite:{}", dir.join("source.db").display()), None),
        };
        let env = Self { database_url, redis_url: redis_url(), namespace: name, dir, db_name };
        env.cache().await.ping().await.unwrap_or_else(|e| {
            panic!(
                "Redis is required at {} ({e}); run scripts/test, which starts it, or set RANQ_TEST_REDIS_URL",
                env.redis_url
            )
        });
        env.source().await.migrate().await.unwrap();
        env
    }

    pub async fn source(&self) -> Source {
        Source::connect(&self.database_url, 4).await.unwrap()
    }

    pub async fn cache(&self) -> Cache {
        Cache::connect(&self.redis_url, &self.namespace).await.unwrap()
    }

    /// Seeds `groups × members` demo rows.
    pub async fn seed(&self, groups: u32, members: u32) {
        let source = self.source().await;
        let options = ranq_db::SeedOptions { groups, members, seed: 42, replace: true };
        source.seed(options, &|_| {}).await.unwrap();
        source.close().await;
    }

    /// A `ranq` command wired to this environment (and nothing from the caller's).
    pub fn ranq(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(ranq_bin());
        for (key, _) in std::env::vars() {
            if key.starts_with("RANQ_") || key == "DATABASE_URL" || key == "REDIS_URL" {
                cmd.env_remove(key);
            }
        }
        cmd.current_dir(&self.dir)
            .env("DATABASE_URL", &self.database_url)
            .env("REDIS_URL", &self.redis_url)
            .env("RANQ_NAMESPACE", &self.namespace)
            .env("RANQ_LOG_FORMAT", "json");
        cmd
    }

    /// Drops the database and the namespace's keys. Call at the end of a test; a failed test
    /// leaves them behind for inspection (scripts/test drops leftovers on the next run).
    pub async fn cleanup(self) {
        let mut conn = self.cache().await.connection();
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}:*", self.namespace)).query_async(&mut conn).await.unwrap();
        if !keys.is_empty() {
            redis::cmd("DEL").arg(&keys).query_async::<()>(&mut conn).await.unwrap();
        }
        if let Some(name) = &self.db_name {
            let pool = sqlx::PgPool::connect(&admin_url()).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&pool).await.unwrap();
            pool.close().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The SQL truth of a group, computed independently of ranq's query: every row is read and
/// ranked by `ranq_core`'s reference order.
pub async fn truth(source: &Source, group: GroupId) -> Vec<Entry> {
    let sql = "SELECT member_id, score, updated_at FROM ranq_scores WHERE group_id = $1";
    let rows: Vec<(i64, i64, NaiveDateTime)> = match source.pool() {
        Pool::Postgres(pool) => sqlx::query_as(sql).bind(group).fetch_all(pool).await.unwrap(),
        Pool::Sqlite(pool) => sqlx::query_as(&sql.replace("$1", "?1")).bind(group).fetch_all(pool).await.unwrap(),
    };
    ranq_core::rank_rows(
        rows.into_iter().map(|(member, score, updated_at)| RankedRow { member, score, updated_at }).collect(),
    )
}

/// Runs a statement on the source, whatever its dialect (`$1`-style placeholders are not used).
pub async fn execute(source: &Source, sql: &str) {
    match source.pool() {
        Pool::Postgres(pool) => drop(sqlx::query(sql).execute(pool).await.unwrap()),
        Pool::Sqlite(pool) => drop(sqlx::query(sql).execute(pool).await.unwrap()),
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after `timeout`.
/// For waiting on asynchronous effects; never for judging speed.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `age_buckets` of a status report's `groups` object, as (upper bound in ms, count); the
/// last bound is `None`.
pub fn age_buckets(groups: &serde_json::Value) -> Vec<(Option<u64>, u64)> {
    let buckets = groups["age_buckets"].as_array().unwrap_or_else(|| panic!("no age_buckets in {groups}"));
    buckets.iter().map(|b| (b["le_ms"].as_u64(), b["count"].as_u64().unwrap())).collect()
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
