//! `ranq-db` owns every conversation with the source database: applying the embedded migrations,
//! listing groups, reading the top-N of a batch of groups in one round trip, and seeding demo data.
//!
//! Postgres, MySQL/MariaDB and SQLite are all first-class: Postgres and MySQL/MariaDB for fleets,
//! SQLite for `ranq up` on a laptop. The SQL differs per dialect; the results do not — each applies
//! the ranking order of `ranq_core::ranking`.
//!
//! Architecture Invariant: this crate knows nothing of Redis or the queue; it returns plain
//! `ranq-core` values.
//!
//! Architecture Invariant: the connection pool never leaves this crate; everything else asks
//! [`Source`] by name.

mod custom;
mod error;
mod mysql;
mod outbox;
mod postgres;
mod seed;
mod sqlite;

use ranq_core::{Entry, GroupId, Version};

pub use custom::CustomSql;
pub use error::DbError;
pub use outbox::{ChangeSource, OutboxBatch};
pub use postgres::{CHANGE_FEED_CHANNEL, ChangeFeed, FeedEvent};
pub use seed::{SeedOptions, SeedReport};

/// The embedded schema migrations (`migrations/`), portable SQL applied to Postgres and SQLite.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Migrations whose text changed after they shipped without changing what they do (a comment
/// reworded), each with the checksum an earlier release recorded for it. sqlx refuses to run
/// against a database whose recorded checksum differs from the embedded file's, so `migrate`
/// first records the current checksum in place of a listed old one, and only of a listed one:
/// any other difference is still refused.
const REWORDED: [(i64, [u8; 48]); 1] = [(
    1,
    [
        0xab, 0x30, 0xc9, 0xe6, 0xdd, 0xfa, 0x7b, 0x2e, 0x7d, 0xfc, 0x8d, 0xaf, 0xe0, 0xb3, 0x11, 0xc9, 0xb2, 0xd4,
        0x5b, 0x29, 0x54, 0x24, 0xfd, 0x9a, 0xe2, 0x84, 0xa6, 0xb8, 0x32, 0xc8, 0x1e, 0x98, 0x3b, 0xde, 0x46, 0x18,
        0x56, 0x9c, 0xd4, 0xab, 0xf4, 0x78, 0xaa, 0x8f, 0xc0, 0xab, 0x23, 0xfb,
    ],
)];

/// The rows of one refreshed batch, all read by one statement at one `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopBatch {
    pub version: Version,
    /// One per distinct requested group.
    pub groups: Vec<GroupTop>,
}

/// One group's top-N as a batch read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTop {
    pub group: GroupId,
    /// In rank order; `None` when the group is not in the source.
    pub entries: Option<Vec<Entry>>,
}

/// A connection pool of one of the dialects.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Postgres(sqlx::PgPool),
    MySql(sqlx::MySqlPool),
    Sqlite(sqlx::SqlitePool),
}

/// Evaluates `$body` with `$p` bound to whichever pool `$pool` holds: for SQL that every dialect
/// accepts as written.
macro_rules! on_any_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::Pool::Postgres($p) => $body,
            $crate::Pool::MySql($p) => $body,
            $crate::Pool::Sqlite($p) => $body,
        }
    };
}
pub(crate) use on_any_pool;

/// The source database: a pool, its dialect chosen by the URL's scheme, and the SQL that
/// reads it — ranq's own for the reference schema, or the user's ([`CustomSql`]).
#[derive(Debug, Clone)]
pub struct Source {
    pool: Pool,
    custom: Option<std::sync::Arc<custom::Checked>>,
}

impl Source {
    /// Connects to `url` (`postgres://…`, `mysql://…`, `mariadb://…` or `sqlite:…`). Fails fast
    /// with a message that names the (redacted) URL when the database cannot be reached.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbError> {
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Pool::Postgres(postgres::connect(url, max_connections).await?)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Pool::MySql(mysql::connect(url, max_connections).await?)
        } else if url.starts_with("sqlite:") {
            Pool::Sqlite(sqlite::connect(url, max_connections).await?)
        } else {
            return Err(DbError::UnsupportedUrl(ranq_core::redact_url(url)));
        };
        Ok(Self { pool, custom: None })
    }

    /// Reads groups through the user's SQL instead of the reference schema. Every query is
    /// prepared once here, so a typo or a missing column fails at start-up, naming the setting and
    /// the column, rather than on the first refresh.
    pub async fn with_custom_sql(mut self, custom: CustomSql) -> Result<Self, DbError> {
        if custom.is_empty() {
            self.custom = None;
            return Ok(self);
        }
        self.custom = Some(std::sync::Arc::new(custom.validate(&self.pool).await?));
        Ok(self)
    }

    /// Checks that the reference tables this source reads exist, so that a fleet started before
    /// `ranq migrate` says so at once instead of failing every tick.
    pub async fn check_schema(&self) -> Result<(), DbError> {
        let custom = self.custom.as_deref().map(|c| &c.sql);
        let reads_scores = custom.is_none_or(|c| c.top_query.is_none());
        let reads_groups = reads_scores || custom.is_none_or(|c| c.group_ids_query.is_none());
        let probes = [
            (reads_groups, "SELECT id, name FROM ranq_groups LIMIT 0"),
            (reads_scores, "SELECT group_id, member_id, score, updated_at FROM ranq_scores LIMIT 0"),
        ];
        for (_, sql) in probes.iter().filter(|(needed, _)| *needed) {
            let result = on_any_pool!(&self.pool, pool => sqlx::query(sql).execute(pool).await.map(|_| ()));
            result.map_err(DbError::query("checking the source schema"))?;
        }
        Ok(())
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Applies the embedded migrations; running it again is a no-op.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match &self.pool {
            Pool::Postgres(pool) => {
                self.adopt_reworded_migrations().await?;
                postgres::migrate(pool).await
            }
            Pool::MySql(pool) => mysql::migrate(pool).await,
            Pool::Sqlite(pool) => {
                self.adopt_reworded_migrations().await?;
                sqlite::migrate(pool).await
            }
        }
    }

    /// Records the embedded checksum of each [`REWORDED`] migration that this database applied
    /// with its old text. A database never migrated has nothing to adopt.
    async fn adopt_reworded_migrations(&self) -> Result<(), DbError> {
        const ADOPT: &str = "UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2 AND checksum = $3";
        for (version, old) in &REWORDED {
            let Some(now) = MIGRATOR.iter().find(|m| m.version == *version) else { continue };
            let adopted = match &self.pool {
                Pool::Postgres(pool) => {
                    sqlx::query(ADOPT).bind(&*now.checksum).bind(version).bind(&old[..]).execute(pool).await.map(drop)
                }
                Pool::Sqlite(pool) => {
                    sqlx::query(ADOPT).bind(&*now.checksum).bind(version).bind(&old[..]).execute(pool).await.map(drop)
                }
                // MySQL/MariaDB have a migration set of their own, never reworded.
                Pool::MySql(_) => Ok(()),
            };
            match adopted.map_err(DbError::query("recording a reworded migration's checksum")) {
                Err(e) if e.is_missing_table() => return Ok(()),
                other => other?,
            }
        }
        Ok(())
    }

    /// A `LISTEN` on the Postgres change feed that `ranq migrate --with-triggers` installs, on a
    /// connection of its own. The other dialects keep an outbox instead ([`Source::change_source`]).
    pub async fn listen_for_changes(&self) -> Result<ChangeFeed, DbError> {
        match &self.pool {
            Pool::Postgres(pool) => ChangeFeed::listen(pool).await,
            Pool::MySql(_) | Pool::Sqlite(_) => {
                Err(DbError::Unsupported("LISTEN/NOTIFY needs Postgres; this database keeps an outbox instead"))
            }
        }
    }

    /// Installs the optional change feed (`ranq migrate --with-triggers`). Postgres: triggers that
    /// `NOTIFY` every changed group on [`CHANGE_FEED_CHANNEL`]. MySQL/MariaDB and SQLite: the
    /// outbox table `ranq_outbox` and triggers that append every changed group to it, drained
    /// by the leading producer. Idempotent.
    pub async fn install_change_feed(&self) -> Result<(), DbError> {
        match &self.pool {
            Pool::Postgres(pool) => postgres::install_change_feed(pool).await,
            Pool::MySql(pool) => mysql::install_outbox(pool).await,
            Pool::Sqlite(pool) => sqlite::install_outbox(pool).await,
        }
    }

    /// Every group id in the source, ascending.
    pub async fn group_ids(&self) -> Result<Vec<GroupId>, DbError> {
        if let Some(custom) = self.custom.as_deref().filter(|c| c.sql.group_ids_query.is_some()) {
            return custom.group_ids(&self.pool).await;
        }
        let ids = on_any_pool!(&self.pool, pool =>
            sqlx::query_scalar("SELECT id FROM ranq_groups ORDER BY id").fetch_all(pool).await
        );
        ids.map_err(DbError::query("listing groups"))
    }

    /// The top-N of every group in `groups`, read by one statement. Duplicate ids are read once.
    pub async fn top_n(&self, groups: &[GroupId]) -> Result<TopBatch, DbError> {
        let mut ids = groups.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if let Some(custom) = self.custom.as_deref().filter(|c| c.sql.top_query.is_some()) {
            return custom.top_n(&self.pool, &ids).await;
        }
        match &self.pool {
            Pool::Postgres(pool) => postgres::top_n(pool, &ids).await,
            Pool::MySql(pool) => mysql::top_n(pool, &ids).await,
            Pool::Sqlite(pool) => sqlite::top_n(pool, &ids).await,
        }
    }

    /// Closes the pool, waiting for checked-out connections to return.
    pub async fn close(&self) {
        on_any_pool!(&self.pool, pool => pool.close().await);
    }
}

/// Rows as both dialects return them: `(group, group exists, member, score, rank)`, where member,
/// score and rank are NULL for a group without members (or that does not exist).
type TopRow = (GroupId, bool, Option<i64>, Option<i64>, Option<i64>);

/// Folds per-member rows into one entry list per requested group, ordered by rank.
fn assemble(ids: &[GroupId], rows: Vec<TopRow>, version: Version) -> TopBatch {
    use std::collections::HashMap;
    let mut by_group: HashMap<GroupId, (bool, Vec<Entry>)> = HashMap::with_capacity(ids.len());
    for (group, exists, member, score, rank) in rows {
        let slot = by_group.entry(group).or_insert_with(|| (exists, Vec::new()));
        if let (Some(member), Some(score), Some(rank)) = (member, score, rank) {
            slot.1.push(Entry { rank: u32::try_from(rank).unwrap_or(u32::MAX), member, score });
        }
    }
    let groups = ids
        .iter()
        .map(|&id| {
            let (exists, mut entries) = by_group.remove(&id).unwrap_or((false, Vec::new()));
            entries.sort_unstable_by_key(|e| e.rank);
            GroupTop { group: id, entries: exists.then_some(entries) }
        })
        .collect();
    TopBatch { version, groups }
}
