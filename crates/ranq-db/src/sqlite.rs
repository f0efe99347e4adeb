//! SQLite dialect, for `ranq up` and small single-host setups. SQLite has no `LATERAL`, so the
//! top-N is a window function over the batch's groups; the batch's ids travel as one JSON array.
//! SQLite runs on this host, so the version comes from this host's clock.

use std::str::FromStr;
use std::time::Duration;

use ranq_core::{GroupId, TOP_N};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use crate::{DbError, TopBatch, TopRow, assemble};

pub(crate) async fn connect(url: &str, max_connections: u32) -> Result<SqlitePool, DbError> {
    let redacted = || ranq_core::redact_url(url);
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|source| DbError::Connect { url: redacted(), source })?
        .create_if_missing(true)
        // WAL lets the producer and several workers read while one writer (seed, a user) writes.
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|source| DbError::Connect { url: redacted(), source })
}

pub(crate) async fn migrate(pool: &SqlitePool) -> Result<(), DbError> {
    crate::MIGRATOR.run(pool).await.map_err(DbError::from)
}

pub(crate) async fn install_outbox(pool: &SqlitePool) -> Result<(), DbError> {
    sqlx::raw_sql(include_str!("../../../migrations/sqlite-change-feed/outbox.sql"))
        .execute(pool)
        .await
        .map_err(DbError::query("installing the change feed (outbox)"))?;
    Ok(())
}

const TOP_N_SQL: &str = "
WITH ids(gid) AS (SELECT value FROM json_each(?1)),
ranked AS (
    SELECT s.group_id, s.member_id, s.score,
           row_number() OVER (PARTITION BY s.group_id ORDER BY s.score DESC, s.updated_at, s.member_id) AS rank
    FROM ranq_scores s
    WHERE s.group_id IN (SELECT gid FROM ids)
)
SELECT ids.gid, g.id IS NOT NULL, r.member_id, r.score, r.rank
FROM ids
LEFT JOIN ranq_groups g ON g.id = ids.gid
LEFT JOIN ranked r ON r.group_id = g.id AND r.rank <= ?2";

pub(crate) async fn top_n(pool: &SqlitePool, ids: &[GroupId]) -> Result<TopBatch, DbError> {
    let version = ranq_core::fence::version_of(chrono::Utc::now());
    let json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    let rows: Vec<TopRow> = sqlx::query_as(TOP_N_SQL)
        .bind(json)
        .bind(TOP_N as i64)
        .fetch_all(pool)
        .await
        .map_err(DbError::query("reading the top-N"))?;
    Ok(assemble(ids, rows, version))
}
