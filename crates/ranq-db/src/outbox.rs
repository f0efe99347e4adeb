//! The outbox change feed, for the databases without `LISTEN/NOTIFY` (MySQL/MariaDB, SQLite).
//!
//! `ranq migrate --with-triggers` creates `ranq_outbox (id, group_id)` and triggers that append a
//! row for every changed group. The leading producer drains it at each tick: in one transaction it
//! reads the oldest rows, hands their groups to the caller (who marks them dirty in Redis), and
//! only then deletes exactly the rows it read and commits. A producer that dies anywhere in
//! between leaves the rows in place for the next leader, so a change is never lost, only marked
//! twice at worst — and a dirty mark is idempotent.
//!
//! The drain never blocks the application's writes on MySQL/MariaDB: its read is a plain
//! (non-locking) one, and its delete locks only the rows it names, by primary key, so no gap
//! lock stands in the way of new rows. SQLite has one writer at a time; the drain takes the write
//! lock up front (`BEGIN IMMEDIATE`), so the application waits for one Redis round trip at most,
//! within its busy timeout.

use ranq_core::GroupId;
use sqlx::{MySql, Sqlite, Transaction};

use crate::{DbError, Pool, Source};

/// How this database tells the producer which groups changed, without the application's help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeSource {
    /// Postgres `LISTEN/NOTIFY` ([`Source::listen_for_changes`]).
    Notify,
    /// The outbox table, drained each tick ([`Source::take_outbox`]).
    Outbox,
    /// Nothing installed: `ranq migrate --with-triggers` has not been run (outbox dialects only;
    /// a Postgres producer listens whether or not the triggers exist).
    NotInstalled,
}

/// Rows read from the outbox, held in an open transaction until [`OutboxBatch::commit`] deletes
/// them. Dropped uncommitted, it leaves every row in place.
#[derive(Debug)]
pub struct OutboxBatch {
    groups: Vec<GroupId>,
    ids: Vec<i64>,
    tx: OutboxTx,
}

#[derive(Debug)]
enum OutboxTx {
    MySql(Transaction<'static, MySql>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl OutboxBatch {
    /// The changed groups, each once.
    pub fn groups(&self) -> &[GroupId] {
        &self.groups
    }

    /// Outbox rows read (a group changed several times has several).
    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    /// Deletes the rows read and commits: call once their groups are marked dirty.
    pub async fn commit(self) -> Result<(), DbError> {
        let what = "deleting drained outbox rows";
        match self.tx {
            OutboxTx::MySql(mut tx) => {
                let mut sql = String::from("DELETE FROM ranq_outbox WHERE id IN (");
                crate::mysql::push_list(&mut sql, &self.ids);
                sql.push(')');
                // `query`, not `raw_sql`: rustc cannot prove `raw_sql`'s future `Send` on a
                // borrowed transaction (a higher-ranked lifetime limit), and a tick must be `Send`.
                sqlx::query(&sql).persistent(false).execute(&mut *tx).await.map_err(DbError::query(what))?;
                tx.commit().await.map_err(DbError::query(what))
            }
            OutboxTx::Sqlite(mut tx) => {
                let json = serde_json::to_string(&self.ids).unwrap_or_else(|_| "[]".into());
                sqlx::query("DELETE FROM ranq_outbox WHERE id IN (SELECT value FROM json_each(?1))")
                    .bind(json)
                    .execute(&mut *tx)
                    .await
                    .map_err(DbError::query(what))?;
                tx.commit().await.map_err(DbError::query(what))
            }
        }
    }
}

const SELECT_OLDEST: &str = "SELECT id, group_id FROM ranq_outbox ORDER BY id LIMIT ";

impl Source {
    /// How this database announces changed groups, if it does.
    pub async fn change_source(&self) -> Result<ChangeSource, DbError> {
        let probe = "SELECT id, group_id FROM ranq_outbox LIMIT 0";
        let result = match &self.pool {
            Pool::Postgres(_) => return Ok(ChangeSource::Notify),
            Pool::MySql(pool) => sqlx::query(probe).execute(pool).await.map(drop),
            Pool::Sqlite(pool) => sqlx::query(probe).execute(pool).await.map(drop),
        };
        match result.map_err(DbError::query("looking for the outbox")) {
            Ok(()) => Ok(ChangeSource::Outbox),
            Err(error) if error.is_missing_table() => Ok(ChangeSource::NotInstalled),
            Err(error) => Err(error),
        }
    }

    /// The oldest outbox rows, at most `max`, in an open transaction; `None` when the outbox is
    /// empty.
    pub async fn take_outbox(&self, max: usize) -> Result<Option<OutboxBatch>, DbError> {
        let what = "reading the outbox";
        let sql = format!("{SELECT_OLDEST}{}", max.max(1));
        let (rows, tx): (Vec<(i64, GroupId)>, OutboxTx) = match &self.pool {
            Pool::Postgres(_) => return Err(DbError::Unsupported("Postgres announces changes by LISTEN/NOTIFY")),
            Pool::MySql(pool) => {
                let mut tx = pool.begin().await.map_err(DbError::query(what))?;
                let rows = sqlx::query_as(&sql).fetch_all(&mut *tx).await.map_err(DbError::query(what))?;
                (rows, OutboxTx::MySql(tx))
            }
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(DbError::query(what))?;
                let rows = sqlx::query_as(&sql).fetch_all(&mut *tx).await.map_err(DbError::query(what))?;
                (rows, OutboxTx::Sqlite(tx))
            }
        };
        if rows.is_empty() {
            return Ok(None);
        }
        let ids = rows.iter().map(|&(id, _)| id).collect();
        let mut groups: Vec<GroupId> = rows.into_iter().map(|(_, group)| group).collect();
        groups.sort_unstable();
        groups.dedup();
        Ok(Some(OutboxBatch { groups, ids, tx }))
    }
}
