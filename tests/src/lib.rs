//! The test harness: every test gets its own Postgres or MariaDB database (or SQLite file) and its
//! own Redis namespace, so the whole suite runs in parallel against one real server of each.
//!
//! Services are found at `RANQ_TEST_DATABASE_URL` (a Postgres admin URL; default
//! `postgres://postgres@127.0.0.1:5432/postgres`), `RANQ_TEST_MYSQL_URL` (a MariaDB or MySQL admin
//! URL; default `mysql://root@127.0.0.1:3306/test`) and `RANQ_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`). A missing service fails the test with a message saying how to start
//! it; nothing is skipped. `scripts/test` starts them when they are absent.

#![allow(clippy::unwrap_used)] // Test support: a failed setup step should panic with its message.

pub mod browser;
pub mod process;
pub mod reads;
pub mod tls;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::NaiveDateTime;
use ranq_cache::Cache;
use ranq_core::{Entry, GroupId, RankedRow};
use ranq_db::Source;
use ranq_launch::Launcher;

pub use browser::Browser;
pub use process::{Proc, bench_bin, ranq_bin};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn admin_url() -> String {
    std::env::var("RANQ_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn mysql_admin_url() -> String {
    std::env::var("RANQ_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
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
    /// MariaDB or MySQL, at `RANQ_TEST_MYSQL_URL`.
    MariaDb,
    Sqlite,
}

impl Dialect {
    /// The database's default port, for tests that put a proxy in front of it.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Postgres => 5432,
            Self::MariaDb => 3306,
            Self::Sqlite => 0,
        }
    }
}

/// One test's private world: a fresh database and a fresh Redis namespace.
#[derive(Debug)]
pub struct TestEnv {
    pub database_url: String,
    pub redis_url: String,
    pub namespace: String,
    pub dir: PathBuf,
    pub dialect: Dialect,
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
            Dialect::MariaDb => {
                let admin = mysql_admin_url();
                let pool = sqlx::MySqlPool::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("MariaDB is required at {admin} ({e}); run scripts/test, which starts it, or set RANQ_TEST_MYSQL_URL")
                });
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await.unwrap();
                pool.close().await;
                let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
                (format!("{base}/{name}"), Some(name.clone()))
            }
            Dialect::Sqlite => (format!("sqlite:{}", dir.join("source.db").display()), None),
        };
        let env = Self { database_url, redis_url: redis_url(), namespace: name, dir, dialect, db_name };
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

    /// The test's own connection to the source database, to set the scene and to compute the
    /// truth independently of ranq.
    pub async fn sql(&self) -> Sql {
        match self.dialect {
            Dialect::Postgres => Sql::Postgres(sqlx::PgPool::connect(&self.database_url).await.unwrap()),
            Dialect::MariaDb => Sql::MySql(sqlx::MySqlPool::connect(&self.database_url).await.unwrap()),
            Dialect::Sqlite => Sql::Sqlite(sqlx::SqlitePool::connect(&self.database_url).await.unwrap()),
        }
    }

    /// The test's own connection to Redis, to look at keys or break them as a fault would; one
    /// server or a cluster, as `RANQ_TEST_REDIS_URL` says.
    pub async fn redis(&self) -> ranq_redis::RedisConn {
        ranq_redis::Redis::connect(&self.redis_url).await.unwrap().conn()
    }

    /// Seeds `groups × members` demo rows.
    pub async fn seed(&self, groups: u32, members: u32) {
        let source = self.source().await;
        let options = ranq_db::SeedOptions { groups, members, seed: 42, replace: true };
        source.seed(options, &|_| {}).await.unwrap();
        source.close().await;
    }

    /// The queue's layout as apalis-redis derives it from the queue's documented name
    /// (`<ns>:{queue}`): what another client of the queue sees, for tests that push what ranq
    /// never would or break a job's metadata.
    pub fn apalis_queue(&self) -> apalis_redis::Config {
        let keys = ranq_core::Keys::new(self.namespace.clone());
        apalis_redis::Config::default().queue(keys.queue()).registry(keys.queue_registry())
    }

    /// How this environment launches ranq's roles: its database, Redis and namespace, and
    /// nothing from the caller's environment.
    pub fn launcher(&self) -> Launcher {
        Launcher::new(ranq_bin(), Some(&self.database_url), &self.redis_url, &self.namespace)
            .var("RANQ_LOG_FORMAT", "json")
            // Tests run many read servers at once: each gets an admin port of its own unless it
            // asks for one (`--admin-listen`).
            .var("RANQ_READ__ADMIN_LISTEN", "127.0.0.1:0")
            .isolated()
    }

    /// A `ranq` command wired to this environment, run in the test's directory.
    pub fn ranq(&self) -> std::process::Command {
        let mut cmd = self.launcher().command(&[]);
        cmd.current_dir(&self.dir);
        cmd
    }

    /// A `ranq-bench` command wired to this environment, run in the test's directory.
    pub fn ranq_bench(&self) -> std::process::Command {
        let mut cmd = self.launcher().with_exe(bench_bin()).command(&[]);
        cmd.current_dir(&self.dir);
        cmd
    }

    /// Drops the database and the namespace's keys. Call at the end of a test; a failed test
    /// leaves them behind for inspection (scripts/test drops leftovers on the next run).
    pub async fn cleanup(self) {
        let redis = ranq_redis::Redis::connect(&self.redis_url).await.unwrap();
        redis.unlink_matching(&format!("{}:*", self.namespace)).await.unwrap();
        match (&self.db_name, self.dialect) {
            (Some(name), Dialect::Postgres) => {
                let pool = sqlx::PgPool::connect(&admin_url()).await.unwrap();
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&pool).await.unwrap();
                pool.close().await;
            }
            (Some(name), Dialect::MariaDb) => {
                let pool = sqlx::MySqlPool::connect(&mysql_admin_url()).await.unwrap();
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&pool).await.unwrap();
                pool.close().await;
            }
            _ => {}
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A test's own connection to its source database, of either dialect.
#[derive(Debug, Clone)]
pub enum Sql {
    Postgres(sqlx::PgPool),
    MySql(sqlx::MySqlPool),
    Sqlite(sqlx::SqlitePool),
}

/// The SQL truth of a group, computed independently of ranq's query: every row is read and
/// ranked by `ranq_core`'s reference order.
pub async fn truth(sql: &Sql, group: GroupId) -> Vec<Entry> {
    let query = "SELECT member_id, score, updated_at FROM ranq_scores WHERE group_id = $1";
    let rows: Vec<(i64, i64, NaiveDateTime)> = match sql {
        Sql::Postgres(pool) => sqlx::query_as(query).bind(group).fetch_all(pool).await.unwrap(),
        Sql::MySql(pool) => sqlx::query_as(&query.replace("$1", "?")).bind(group).fetch_all(pool).await.unwrap(),
        Sql::Sqlite(pool) => sqlx::query_as(&query.replace("$1", "?1")).bind(group).fetch_all(pool).await.unwrap(),
    };
    ranq_core::rank_rows(
        rows.into_iter().map(|(member, score, updated_at)| RankedRow { member, score, updated_at }).collect(),
    )
}

/// Runs a statement on the source, whatever its dialect (`$1`-style placeholders are not used).
pub async fn execute(sql: &Sql, statement: &str) {
    match sql {
        Sql::Postgres(pool) => drop(sqlx::query(statement).execute(pool).await.unwrap()),
        // Text protocol: some statements (CREATE FUNCTION, triggers) cannot be prepared here.
        Sql::MySql(pool) => drop(sqlx::raw_sql(statement).execute(pool).await.unwrap()),
        Sql::Sqlite(pool) => drop(sqlx::query(statement).execute(pool).await.unwrap()),
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
    ranq_launch::free_port().unwrap()
}
