//! Deterministic demo data (`ranq seed`): groups `1..=N`, members `1..=M` each, scores from
//! `ranq_core::seed`. One transaction, batched multi-row inserts, progress reported per batch.

use chrono::{DateTime, NaiveDateTime};
use ranq_core::GroupId;
use ranq_core::seed::group_rows;

use crate::{DbError, Source};

/// Rows per insert statement. Postgres takes them as arrays (no bind limit); SQLite binds four
/// parameters per row and allows 32,766 in a statement; MySQL/MariaDB allow 65,535.
const PG_ROWS_PER_INSERT: usize = 50_000;
const SQLITE_ROWS_PER_INSERT: usize = 8_000;
const MYSQL_ROWS_PER_INSERT: usize = 16_000;

#[derive(Debug, Clone, Copy)]
pub struct SeedOptions {
    pub groups: u32,
    pub members: u32,
    pub seed: u64,
    /// Delete every existing group (and its scores) first.
    pub replace: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub groups: u64,
    pub rows: u64,
}

/// The instant that seeded `updated_at` offsets count from.
fn seed_epoch() -> NaiveDateTime {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default().naive_utc() // 2026-01-01T00:00:00Z
}

/// Replaces every group with the demo set through `$pool` in one transaction, as multi-row
/// `VALUES` lists with one bind per value: the shape for the dialects without array parameters.
/// A macro, as the two dialects' pools share no executor type.
macro_rules! replace_by_values {
    ($pool:expr, $opts:expr, $groups_per_insert:expr, $progress:expr) => {{
        let mut tx = $pool.begin().await.map_err(DbError::query("starting the seed"))?;
        sqlx::query("DELETE FROM ranq_groups").execute(&mut *tx).await.map_err(DbError::query("deleting groups"))?;
        for chunk in chunks($opts.groups, $groups_per_insert) {
            let mut insert = sqlx::QueryBuilder::new("INSERT INTO ranq_groups (id, name) ");
            insert.push_values(&chunk, |mut b, id| {
                b.push_bind(*id).push_bind(format!("group-{id}"));
            });
            insert.build().execute(&mut *tx).await.map_err(DbError::query("inserting groups"))?;
            let (g, m, s, u) = score_columns(&chunk, $opts);
            let mut insert =
                sqlx::QueryBuilder::new("INSERT INTO ranq_scores (group_id, member_id, score, updated_at) ");
            insert.push_values(0..g.len(), |mut b, i| {
                b.push_bind(g[i]).push_bind(m[i]).push_bind(s[i]).push_bind(u[i]);
            });
            insert.build().execute(&mut *tx).await.map_err(DbError::query("inserting scores"))?;
            $progress(chunk.last().copied().unwrap_or_default() as u64);
        }
        tx.commit().await.map_err(DbError::query("committing the seed"))?;
    }};
}

impl Source {
    /// Number of groups in the source.
    pub async fn count_groups(&self) -> Result<i64, DbError> {
        let n = crate::on_any_pool!(self.pool(), pool =>
            sqlx::query_scalar("SELECT count(*) FROM ranq_groups").fetch_one(pool).await
        );
        n.map_err(DbError::query("counting groups"))
    }

    /// Writes the demo data set. `progress` is called with the number of groups written so far.
    pub async fn seed(&self, opts: SeedOptions, progress: &(dyn Fn(u64) + Sync)) -> Result<SeedReport, DbError> {
        let existing = self.count_groups().await?;
        if existing > 0 && !opts.replace {
            return Err(DbError::Seed(format!(
                "the database already has {existing} groups; pass --replace to delete them first"
            )));
        }
        let groups_per_insert = (self.rows_per_insert() / opts.members.max(1) as usize).max(1);
        match self.pool() {
            crate::Pool::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(DbError::query("starting the seed"))?;
                sqlx::query("DELETE FROM ranq_groups")
                    .execute(&mut *tx)
                    .await
                    .map_err(DbError::query("deleting groups"))?;
                for chunk in chunks(opts.groups, groups_per_insert) {
                    let (ids, names) = group_columns(&chunk);
                    sqlx::query("INSERT INTO ranq_groups (id, name) SELECT * FROM unnest($1::bigint[], $2::text[])")
                        .bind(&ids)
                        .bind(&names)
                        .execute(&mut *tx)
                        .await
                        .map_err(DbError::query("inserting groups"))?;
                    let (g, m, s, u) = score_columns(&chunk, opts);
                    sqlx::query(
                        "INSERT INTO ranq_scores (group_id, member_id, score, updated_at)
                         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamp[])",
                    )
                    .bind(&g)
                    .bind(&m)
                    .bind(&s)
                    .bind(&u)
                    .execute(&mut *tx)
                    .await
                    .map_err(DbError::query("inserting scores"))?;
                    progress(chunk.last().copied().unwrap_or_default() as u64);
                }
                tx.commit().await.map_err(DbError::query("committing the seed"))?;
                // A bulk load leaves the visibility map unset, so the top-N's index-only scans
                // would fetch every heap row until autovacuum gets round to the table: measured
                // 5.8 ms against 2.9 ms per batch of 128 groups. Leave the table as a running
                // system would have it.
                sqlx::query("VACUUM ANALYZE ranq_groups, ranq_scores")
                    .execute(pool)
                    .await
                    .map_err(DbError::query("vacuuming after the seed"))?;
            }
            crate::Pool::MySql(pool) => {
                replace_by_values!(pool, opts, groups_per_insert, progress);
                // Fresh statistics, so the ranking index is chosen from the first refresh.
                sqlx::query("ANALYZE TABLE ranq_groups, ranq_scores")
                    .execute(pool)
                    .await
                    .map_err(DbError::query("analyzing after the seed"))?;
            }
            crate::Pool::Sqlite(pool) => replace_by_values!(pool, opts, groups_per_insert, progress),
        }
        Ok(SeedReport { groups: u64::from(opts.groups), rows: u64::from(opts.groups) * u64::from(opts.members) })
    }

    fn rows_per_insert(&self) -> usize {
        match self.pool() {
            crate::Pool::Postgres(_) => PG_ROWS_PER_INSERT,
            crate::Pool::MySql(_) => MYSQL_ROWS_PER_INSERT,
            crate::Pool::Sqlite(_) => SQLITE_ROWS_PER_INSERT,
        }
    }
}

fn chunks(groups: u32, per_chunk: usize) -> impl Iterator<Item = Vec<GroupId>> {
    let ids: Vec<GroupId> = (1..=GroupId::from(groups)).collect();
    let chunks: Vec<Vec<GroupId>> = ids.chunks(per_chunk).map(<[GroupId]>::to_vec).collect();
    chunks.into_iter()
}

fn group_columns(ids: &[GroupId]) -> (Vec<GroupId>, Vec<String>) {
    (ids.to_vec(), ids.iter().map(|id| format!("group-{id}")).collect())
}

type ScoreColumns = (Vec<i64>, Vec<i64>, Vec<i64>, Vec<NaiveDateTime>);

fn score_columns(groups: &[GroupId], opts: SeedOptions) -> ScoreColumns {
    let capacity = groups.len() * opts.members as usize;
    let mut cols: ScoreColumns = (
        Vec::with_capacity(capacity),
        Vec::with_capacity(capacity),
        Vec::with_capacity(capacity),
        Vec::with_capacity(capacity),
    );
    let epoch = seed_epoch();
    for &group in groups {
        for (member, score, offset) in group_rows(opts.seed, group, opts.members) {
            cols.0.push(group);
            cols.1.push(member);
            cols.2.push(score);
            cols.3.push(epoch + chrono::Duration::seconds(offset));
        }
    }
    cols
}
