//! Postgres dialect. The top-N query is the shape measured fastest on this stack: the batch's ids
//! `unnest`ed and joined `LATERAL` to an index range scan that stops at N rows per group, with the
//! version taken from `statement_timestamp()` so refreshes on different hosts are ordered by the
//! database's clock, not theirs.

use std::time::Duration;

use ranq_core::{GroupId, TOP_N};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::{DbError, TopBatch, TopRow, assemble};

pub(crate) async fn connect(url: &str, max_connections: u32) -> Result<PgPool, DbError> {
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|source| DbError::Connect { url: ranq_core::redact_url(url), source })
}

pub(crate) async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    crate::MIGRATOR.run(pool).await.map_err(DbError::from)
}

/// The channel the change feed announces changed groups on.
pub const CHANGE_FEED_CHANNEL: &str = "ranq_dirty";

pub(crate) async fn install_change_feed(pool: &PgPool) -> Result<(), DbError> {
    sqlx::raw_sql(include_str!("../../../migrations/postgres-change-feed/change_feed.sql"))
        .execute(pool)
        .await
        .map_err(DbError::query("installing the change feed"))?;
    Ok(())
}

/// What the change feed said next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// These groups changed.
    Changed(Vec<GroupId>),
    /// The connection was lost and re-established: changes in between were not announced.
    Gap,
}

/// A `LISTEN` on the change feed. Reconnects by itself; a reconnect is reported as a
/// [`FeedEvent::Gap`] so the caller can make up for the changes it missed.
#[derive(Debug)]
pub struct ChangeFeed {
    listener: sqlx::postgres::PgListener,
}

impl ChangeFeed {
    pub async fn listen(pool: &PgPool) -> Result<Self, DbError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(pool)
            .await
            .map_err(DbError::query("connecting the change feed"))?;
        listener.listen(CHANGE_FEED_CHANNEL).await.map_err(DbError::query("listening to the change feed"))?;
        Ok(Self { listener })
    }

    /// Waits for the next notification, then takes every one already waiting (up to `max`).
    pub async fn next(&mut self, max: usize) -> Result<FeedEvent, DbError> {
        let Some(first) = self.listener.try_recv().await.map_err(DbError::query("reading the change feed"))? else {
            return Ok(FeedEvent::Gap);
        };
        let mut groups: Vec<GroupId> = first.payload().parse().into_iter().collect();
        while groups.len() < max {
            match self.listener.next_buffered() {
                Some(n) => groups.extend(n.payload().parse::<GroupId>()),
                None => break,
            }
        }
        Ok(FeedEvent::Changed(groups))
    }
}

const TOP_N_SQL: &str = "
SELECT ids.gid,
       g.id IS NOT NULL,
       t.member_id,
       t.score,
       t.rank,
       (extract(epoch FROM statement_timestamp()) * 1000000)::bigint
FROM unnest($1::bigint[]) AS ids(gid)
LEFT JOIN ranq_groups g ON g.id = ids.gid
LEFT JOIN LATERAL (
    SELECT s.member_id, s.score,
           row_number() OVER (ORDER BY s.score DESC, s.updated_at, s.member_id) AS rank
    FROM ranq_scores s
    WHERE s.group_id = g.id
    ORDER BY s.score DESC, s.updated_at, s.member_id
    LIMIT $2
) t ON true";

/// A [`TopRow`] followed by the statement's version.
type VersionedRow = (GroupId, bool, Option<i64>, Option<i64>, Option<i64>, i64);

pub(crate) async fn top_n(pool: &PgPool, ids: &[GroupId]) -> Result<TopBatch, DbError> {
    let rows: Vec<VersionedRow> = sqlx::query_as(TOP_N_SQL)
        .bind(ids)
        .bind(TOP_N as i64)
        .fetch_all(pool)
        .await
        .map_err(DbError::query("reading the top-N"))?;
    let version = match rows.first() {
        Some(row) => row.5,
        // No ids, no rows: nothing to version.
        None => 0,
    };
    let rows: Vec<TopRow> = rows.into_iter().map(|(g, e, m, s, r, _)| (g, e, m, s, r)).collect();
    Ok(assemble(ids, rows, version))
}
