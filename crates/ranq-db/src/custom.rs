//! The user's own SQL (`[source] top_query`, `groups_query`, `group_ids_query`; see
//! `docs/source-data.md`), for
//! data that does not live in the reference schema.
//!
//! ranq wraps each query as a subquery and selects the columns it needs by name, so the user's SQL
//! may return more columns, in any order and of any integer type. The wrapper also applies the
//! batch's ids and the rank limit itself: a query that ignores its parameters is slow, never
//! wrong. Parameters: `$1`/`?1` is the batch's group ids (Postgres: `bigint[]`; SQLite: a JSON
//! array, read with `json_each(?1)`), `$2`/`?2` is N (100). MySQL/MariaDB number no parameters:
//! the first `?` is the ids as a JSON array (read with `JSON_TABLE`), the second N; a query uses
//! none, the first, or both, and preparing it at start-up tells which.

use std::collections::HashMap;

use ranq_core::{Entry, GroupId, TOP_N};
use sqlx::{Column, Executor, Statement};

use crate::mysql::VERSION_SQL;
use crate::{DbError, GroupTop, Pool, TopBatch};

/// Reads MySQL/MariaDB's JSON array of ids as rows.
const MYSQL_IDS: &str = "SELECT j.id FROM JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) AS j";

/// The user's queries; an unset one falls back to the reference schema (or, for
/// `groups_query`, to "every requested group exists").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomSql {
    /// Returns `group_id, member_id, score, rank` (rank 1-based in the ranking order) for the
    /// groups in `$1`, at most `$2` rows each.
    pub top_query: Option<String>,
    /// Returns `group_id` for those groups in `$1` that exist; groups it does not return are
    /// removed from the cache. Unset: every requested group is taken to exist.
    pub groups_query: Option<String>,
    /// Returns `group_id` of every group, for full sweeps. No parameters.
    pub group_ids_query: Option<String>,
}

impl CustomSql {
    pub fn is_empty(&self) -> bool {
        self.top_query.is_none() && self.groups_query.is_none() && self.group_ids_query.is_none()
    }

    fn queries(&self) -> impl Iterator<Item = (&'static str, &str, &'static [&'static str])> {
        [
            ("source.top_query", self.top_query.as_deref(), &["group_id", "member_id", "score", "rank"][..]),
            ("source.groups_query", self.groups_query.as_deref(), &["group_id"][..]),
            ("source.group_ids_query", self.group_ids_query.as_deref(), &["group_id"][..]),
        ]
        .into_iter()
        .filter_map(|(key, sql, columns)| sql.map(|sql| (key, sql, columns)))
    }

    /// Prepares every query and checks that it returns the columns ranq reads (and, on
    /// MySQL/MariaDB, how many `?` it takes).
    pub(crate) async fn validate(self, pool: &Pool) -> Result<Checked, DbError> {
        let mut placeholders = Placeholders::default();
        for (key, sql, required) in self.queries() {
            let sql = sql.trim().trim_end_matches(';');
            let prepared = match pool {
                Pool::Postgres(pool) => column_names(pool.prepare(sql).await),
                Pool::MySql(pool) => {
                    let prepared = pool.prepare(sql).await;
                    if let Ok(statement) = &prepared {
                        let count = match statement.parameters() {
                            Some(sqlx::Either::Right(count)) => count,
                            Some(sqlx::Either::Left(types)) => types.len(),
                            None => 0,
                        };
                        let allowed = if key == "source.group_ids_query" { 0 } else { 2 };
                        if count > allowed {
                            return Err(DbError::CustomSql {
                                key,
                                problem: format!(
                                    "takes {count} `?` parameters; it may take at most {allowed} (the ids as a JSON \
                                     array, then N)"
                                ),
                            });
                        }
                        match key {
                            "source.top_query" => placeholders.top = count,
                            "source.groups_query" => placeholders.groups = count,
                            _ => {}
                        }
                    }
                    column_names(prepared)
                }
                Pool::Sqlite(pool) => column_names(pool.prepare(sql).await),
            };
            let returned: Vec<String> = prepared.map_err(|source| {
                // Only the statement's own fault is a configuration error (exit 2); a connection
                // lost while preparing it is a runtime failure, reported as any other query.
                let error = DbError::query("preparing the custom source SQL")(source);
                match error {
                    DbError::Query { source, .. } if !error.is_transient() => {
                        DbError::CustomSql { key, problem: format!("does not prepare: {source}") }
                    }
                    other => other,
                }
            })?;
            if let Some(missing) = required.iter().find(|c| !returned.iter().any(|r| r.eq_ignore_ascii_case(c))) {
                return Err(DbError::CustomSql {
                    key,
                    problem: format!(
                        "returns no column `{missing}` (it returns: {}); it must return {}",
                        returned.join(", "),
                        required.join(", ")
                    ),
                });
            }
        }
        Ok(Checked { sql: self, placeholders })
    }
}

/// How many `?` each MySQL/MariaDB query takes (other dialects number their parameters).
#[derive(Debug, Clone, Copy, Default)]
struct Placeholders {
    top: usize,
    groups: usize,
}

/// The user's queries, prepared and checked against the database ([`CustomSql::validate`]).
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) sql: CustomSql,
    placeholders: Placeholders,
}

/// Binds the first `count` of MySQL/MariaDB's positional parameters: the ids, then N.
fn bind_leading<'q>(
    mut query: sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>,
    count: usize,
    ids: &str,
) -> sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments> {
    if count >= 1 {
        query = query.bind(ids.to_owned());
    }
    if count >= 2 {
        query = query.bind(TOP_N as i64);
    }
    query
}

impl Checked {
    pub(crate) async fn group_ids(&self, pool: &Pool) -> Result<Vec<GroupId>, DbError> {
        let sql = self.sql.group_ids_query.as_deref().map(strip).unwrap_or_default();
        let what = "listing groups (source.group_ids_query)";
        match pool {
            Pool::Postgres(pool) => {
                sqlx::query_scalar(&format!("SELECT t.group_id::bigint FROM ({sql}) AS t ORDER BY 1"))
                    .fetch_all(pool)
                    .await
            }
            Pool::MySql(pool) => {
                sqlx::query_scalar(&format!("SELECT CAST(t.group_id AS SIGNED) FROM ({sql}) AS t ORDER BY 1"))
                    .fetch_all(pool)
                    .await
            }
            Pool::Sqlite(pool) => {
                sqlx::query_scalar(&format!("SELECT t.group_id FROM ({sql}) AS t ORDER BY 1")).fetch_all(pool).await
            }
        }
        .map_err(DbError::query(what))
    }

    /// The top-N of `ids` (sorted, distinct) through the user's SQL.
    pub(crate) async fn top_n(&self, pool: &Pool, ids: &[GroupId]) -> Result<TopBatch, DbError> {
        let existing = match self.sql.groups_query.as_deref() {
            Some(sql) => Some(self.existing(pool, strip(sql), ids).await?),
            None => None,
        };
        let top = self.sql.top_query.as_deref().map(strip).unwrap_or_default();
        let what = "reading the top-N (source.top_query)";
        let (version, rows): (i64, Vec<Row>) = match pool {
            Pool::Postgres(pool) => {
                // One row at least, so the statement's version comes back even when no group has
                // members.
                let sql = format!(
                    "SELECT v.version, t.group_id::bigint, t.member_id::bigint, t.score::bigint, t.rank::bigint
                     FROM (SELECT (extract(epoch FROM statement_timestamp()) * 1000000)::bigint AS version) AS v
                     LEFT JOIN ({top}) AS t ON t.group_id = ANY($1::bigint[]) AND t.rank <= $2"
                );
                let rows: Vec<VersionedRow> = sqlx::query_as(&sql)
                    .bind(ids)
                    .bind(TOP_N as i64)
                    .fetch_all(pool)
                    .await
                    .map_err(DbError::query(what))?;
                let version = rows.first().map_or(0, |r| r.0);
                (version, rows.into_iter().map(|(_, g, m, s, r)| (g, m, s, r)).collect())
            }
            Pool::MySql(pool) => {
                let sql = format!(
                    "SELECT v.version, CAST(t.group_id AS SIGNED), CAST(t.member_id AS SIGNED), CAST(t.score AS SIGNED),
                            CAST(t.`rank` AS SIGNED)
                     FROM (SELECT {VERSION_SQL} AS version) AS v
                     LEFT JOIN ({top}) AS t ON t.group_id IN ({MYSQL_IDS}) AND t.`rank` <= ?"
                );
                let ids = json_ids(ids);
                let query = bind_leading(sqlx::query(&sql), self.placeholders.top, &ids);
                let rows: Vec<VersionedRow> = query
                    .bind(&ids)
                    .bind(TOP_N as i64)
                    .try_map(|row| sqlx::FromRow::from_row(&row))
                    .fetch_all(pool)
                    .await
                    .map_err(DbError::query(what))?;
                let version = rows.first().map_or(0, |r| r.0);
                (version, rows.into_iter().map(|(_, g, m, s, r)| (g, m, s, r)).collect())
            }
            Pool::Sqlite(pool) => {
                let version = ranq_core::fence::version_of(chrono::Utc::now());
                let sql = format!(
                    "SELECT t.group_id, t.member_id, t.score, t.rank FROM ({top}) AS t
                     WHERE t.group_id IN (SELECT value FROM json_each(?1)) AND t.rank <= ?2"
                );
                let rows: Vec<Row> = sqlx::query_as(&sql)
                    .bind(json_ids(ids))
                    .bind(TOP_N as i64)
                    .fetch_all(pool)
                    .await
                    .map_err(DbError::query(what))?;
                (version, rows)
            }
        };
        let mut by_group: HashMap<GroupId, Vec<Entry>> = HashMap::with_capacity(ids.len());
        for row in rows {
            if let (Some(group), Some(member), Some(score), Some(rank)) = row {
                let rank = u32::try_from(rank).ok().filter(|&r| r >= 1).ok_or(DbError::CustomSql {
                    key: "source.top_query",
                    problem: format!("returned rank {rank} for group {group}; ranks start at 1"),
                })?;
                by_group.entry(group).or_default().push(Entry { rank, member, score });
            }
        }
        let groups = ids
            .iter()
            .map(|&id| {
                let exists = existing.as_ref().is_none_or(|e: &Vec<GroupId>| e.binary_search(&id).is_ok());
                let mut entries = by_group.remove(&id).unwrap_or_default();
                entries.sort_unstable_by_key(|e| e.rank);
                GroupTop { group: id, entries: exists.then_some(entries) }
            })
            .collect();
        Ok(TopBatch { version, groups })
    }

    /// Which of `ids` exist, sorted.
    async fn existing(&self, pool: &Pool, sql: &str, ids: &[GroupId]) -> Result<Vec<GroupId>, DbError> {
        let what = "checking which groups exist (source.groups_query)";
        let mut found: Vec<GroupId> = match pool {
            Pool::Postgres(pool) => {
                sqlx::query_scalar(&format!(
                    "SELECT t.group_id::bigint FROM ({sql}) AS t WHERE t.group_id = ANY($1::bigint[])"
                ))
                .bind(ids)
                .fetch_all(pool)
                .await
            }
            Pool::MySql(pool) => {
                let ids = json_ids(ids);
                let sql =
                    format!("SELECT CAST(t.group_id AS SIGNED) FROM ({sql}) AS t WHERE t.group_id IN ({MYSQL_IDS})");
                bind_leading(sqlx::query(&sql), self.placeholders.groups, &ids)
                    .bind(&ids)
                    .try_map(|row: sqlx::mysql::MySqlRow| sqlx::Row::try_get::<GroupId, _>(&row, 0))
                    .fetch_all(pool)
                    .await
            }
            Pool::Sqlite(pool) => {
                sqlx::query_scalar(&format!(
                    "SELECT t.group_id FROM ({sql}) AS t WHERE t.group_id IN (SELECT value FROM json_each(?1))"
                ))
                .bind(json_ids(ids))
                .fetch_all(pool)
                .await
            }
        }
        .map_err(DbError::query(what))?;
        found.sort_unstable();
        Ok(found)
    }
}

/// `(group, member, score, rank)`, all NULL on the filler row of a batch without members.
type Row = (Option<GroupId>, Option<i64>, Option<i64>, Option<i64>);
/// A [`Row`] after the statement's version.
type VersionedRow = (i64, Option<GroupId>, Option<i64>, Option<i64>, Option<i64>);

/// A statement's SQL without the trailing semicolon, which cannot appear inside a subquery.
fn strip(sql: &str) -> &str {
    sql.trim().trim_end_matches(';').trim_end()
}

fn json_ids(ids: &[GroupId]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

fn column_names<'q, S: Statement<'q>>(prepared: Result<S, sqlx::Error>) -> Result<Vec<String>, sqlx::Error> {
    Ok(prepared?.columns().iter().map(|c| c.name().to_owned()).collect())
}
