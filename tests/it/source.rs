//! The source side on every database: the two migration sets describe the same reference schema,
//! a database migrated by an earlier release migrates again, and the outbox change feed keeps
//! every change through a producer killed mid-drain.

use std::collections::BTreeSet;
use std::time::Duration;

use nix::sys::signal::Signal;
use ranq_tests::{Dialect, Proc, Sql, TestEnv, eventually, execute};

/// A column as both information schemas describe it: table, name, type (in Postgres's words),
/// nullable.
type ColumnShape = (String, String, String, bool);

async fn columns(sql: &Sql) -> Vec<ColumnShape> {
    let query = "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
                 WHERE table_name IN ('ranq_groups', 'ranq_scores') AND table_schema = ";
    let rows: Vec<(String, String, String, String)> = match sql {
        Sql::Postgres(pool) => sqlx::query_as(&format!("{query} 'public' ORDER BY table_name, ordinal_position"))
            .fetch_all(pool)
            .await
            .unwrap(),
        Sql::MySql(pool) => sqlx::query_as(
            "SELECT CAST(table_name AS CHAR), CAST(column_name AS CHAR), CAST(data_type AS CHAR),
                    CAST(is_nullable AS CHAR)
             FROM information_schema.columns
             WHERE table_name IN ('ranq_groups', 'ranq_scores') AND table_schema = DATABASE()
             ORDER BY table_name, ordinal_position",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
        Sql::Sqlite(_) => unreachable!("SQLite shares the Postgres migration"),
    };
    rows.into_iter()
        .map(|(table, column, ty, nullable)| {
            let ty = match ty.to_ascii_lowercase().as_str() {
                // DATETIME(6) is MySQL's TIMESTAMP WITHOUT TIME ZONE.
                "datetime" => "timestamp without time zone".to_owned(),
                other => other.to_owned(),
            };
            (table.to_ascii_lowercase(), column.to_ascii_lowercase(), ty, nullable == "YES")
        })
        .collect()
}

/// The ranking index's columns in order, each with whether it is descending; and the delete rule
/// of the scores' foreign key.
async fn ranking_index_and_cascade(sql: &Sql) -> (Vec<(String, bool)>, String) {
    match sql {
        Sql::Postgres(pool) => {
            let index = sqlx::query_as(
                "SELECT pg_get_indexdef(i.indexrelid, k, true), (i.indoption[k - 1] & 1) = 1
                 FROM pg_index i, generate_series(1, i.indnatts) k
                 WHERE i.indexrelid = 'ranq_scores_ranking'::regclass ORDER BY k",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            let rule = sqlx::query_scalar(
                "SELECT delete_rule FROM information_schema.referential_constraints r
                 JOIN information_schema.table_constraints t USING (constraint_schema, constraint_name)
                 WHERE t.table_name = 'ranq_scores'",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            (index, rule)
        }
        Sql::MySql(pool) => {
            let index: Vec<(String, String)> = sqlx::query_as(
                "SELECT CAST(column_name AS CHAR), CAST(collation AS CHAR) FROM information_schema.statistics
                 WHERE table_schema = DATABASE() AND index_name = 'ranq_scores_ranking' ORDER BY seq_in_index",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            let rule = sqlx::query_scalar(
                "SELECT CAST(delete_rule AS CHAR) FROM information_schema.referential_constraints
                 WHERE constraint_schema = DATABASE() AND table_name = 'ranq_scores'",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            (index.into_iter().map(|(column, order)| (column, order == "D")).collect(), rule)
        }
        Sql::Sqlite(_) => unreachable!("SQLite shares the Postgres migration"),
    }
}

#[tokio::test]
async fn the_mysql_migrations_describe_the_same_tables_as_the_portable_ones() {
    let (pg, my) = (TestEnv::new(Dialect::Postgres).await, TestEnv::new(Dialect::MariaDb).await);
    let (pg_sql, my_sql) = (pg.sql().await, my.sql().await);
    let expected = columns(&pg_sql).await;
    assert_eq!(expected.len(), 7, "{expected:?}");
    assert_eq!(columns(&my_sql).await, expected);
    let (index, cascade) = ranking_index_and_cascade(&pg_sql).await;
    let by_name = |c: &[&str]| c.iter().map(|c| (c.to_string(), *c == "score")).collect::<Vec<_>>();
    assert_eq!(index, by_name(&["group_id", "score", "updated_at", "member_id"]));
    assert_eq!(cascade, "CASCADE");
    assert_eq!(ranking_index_and_cascade(&my_sql).await, (index, cascade));
    pg.cleanup().await;
    my.cleanup().await;
}

/// Groups named by rows still in the outbox.
async fn outbox_groups(sql: &Sql) -> BTreeSet<i64> {
    let query = "SELECT DISTINCT group_id FROM ranq_outbox";
    let groups: Vec<i64> = match sql {
        Sql::MySql(pool) => sqlx::query_scalar(query).fetch_all(pool).await.unwrap(),
        Sql::Sqlite(pool) => sqlx::query_scalar(query).fetch_all(pool).await.unwrap(),
        Sql::Postgres(_) => unreachable!("Postgres has no outbox"),
    };
    groups.into_iter().collect()
}

async fn outbox_rows(sql: &Sql) -> i64 {
    let query = "SELECT count(*) FROM ranq_outbox";
    match sql {
        Sql::MySql(pool) => sqlx::query_scalar(query).fetch_one(pool).await.unwrap(),
        Sql::Sqlite(pool) => sqlx::query_scalar(query).fetch_one(pool).await.unwrap(),
        Sql::Postgres(_) => unreachable!("Postgres has no outbox"),
    }
}

/// A leader SIGKILLed while it drains a large outbox (ten batches) loses no change: every
/// group is, at the moment of the kill, either still in the outbox or marked dirty in Redis. A
/// new leader drains the rest.
async fn outbox_marks_survive_a_producer_killed_mid_drain(dialect: Dialect) {
    const GROUPS: i64 = 1_000;
    let env = TestEnv::new(dialect).await;
    env.seed(GROUPS as u32, 5).await;
    let out = env.ranq().args(["migrate", "--with-triggers"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sql = env.sql().await;
    // 100,000 changes, 100 per group, written as one bulk update of the application would.
    for _ in 0..20 {
        execute(&sql, "UPDATE ranq_scores SET score = score + 1").await;
    }
    let before = outbox_rows(&sql).await;
    assert_eq!(before, 20 * GROUPS * 5);

    let start = || {
        let mut cmd = env.ranq();
        cmd.args(["producer", "--schedule", "* * * * * *", "--mode", "dirty", "--sweep-every", "0"]);
        // The successor waits out the killed leader's lease.
        cmd.env("RANQ_PRODUCER__LEASE_TTL", "3s");
        Proc::spawn("producer", cmd)
    };
    let mut producer = start();
    eventually(Duration::from_secs(30), "the drain under way", || async {
        (outbox_rows(&sql).await < before).then_some(())
    })
    .await;
    producer.stop_with(Signal::SIGKILL, Duration::from_secs(10));

    let left = outbox_groups(&sql).await;
    assert!(!left.is_empty() && outbox_rows(&sql).await > 0, "the producer was killed after the drain, not in it");
    let mut conn = env.redis().await;
    let keys = ranq_core::Keys::new(env.namespace.clone());
    let dirty: Vec<i64> = redis::cmd("SMEMBERS").arg(keys.dirty()).query_async(&mut conn).await.unwrap();
    let dirty: BTreeSet<i64> = dirty.into_iter().collect();
    let lost: Vec<i64> = (1..=GROUPS).filter(|g| !left.contains(g) && !dirty.contains(g)).collect();
    assert!(lost.is_empty(), "groups neither in the outbox nor dirty after the kill: {lost:?}");

    let mut successor = start();
    eventually(Duration::from_secs(60), "the next leader drains the rest", || async {
        (outbox_rows(&sql).await == 0).then_some(())
    })
    .await;
    assert!(successor.terminate(Duration::from_secs(20)).success());
    env.cleanup().await;
}

on_each_dialect!(outbox_marks_survive_a_producer_killed_mid_drain, multi_thread, [
    mariadb => MariaDb, sqlite => Sqlite
]);

/// What MySQL/MariaDB say during a failover or under contention — most of it under the
/// catch-all SQLSTATE `HY000`, told apart by error number — is retried; a schema error is not,
/// and fails the batch without blaming a group. The server raises each error itself (`SIGNAL`
/// with the number), through a custom `top_query`.
#[tokio::test]
async fn mysql_errors_of_a_failover_are_retried_and_schema_errors_are_not() {
    let env = TestEnv::new(Dialect::MariaDb).await;
    env.seed(2, 3).await;
    let sql = env.sql().await;
    execute(&sql, "CREATE TABLE ranq_raise (errno INT NOT NULL)").await;
    execute(
        &sql,
        "CREATE FUNCTION ranq_raised() RETURNS INT READS SQL DATA
         BEGIN
           DECLARE n INT DEFAULT (SELECT errno FROM ranq_raise LIMIT 1);
           CASE n
             WHEN 1205 THEN SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1205, MESSAGE_TEXT = 'Lock wait timeout exceeded';
             WHEN 1213 THEN SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'Deadlock found';
             WHEN 1290 THEN SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1290, MESSAGE_TEXT = 'running with --read-only';
             WHEN 1836 THEN SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1836, MESSAGE_TEXT = 'Running in read-only mode';
             WHEN 1146 THEN SIGNAL SQLSTATE '42S02' SET MYSQL_ERRNO = 1146, MESSAGE_TEXT = 'Table does not exist';
             WHEN 1365 THEN SIGNAL SQLSTATE '22012' SET MYSQL_ERRNO = 1365, MESSAGE_TEXT = 'Division by 0';
             ELSE RETURN 1;
           END CASE;
           RETURN 1;
         END",
    )
    .await;
    let custom = ranq_db::CustomSql {
        top_query: Some(
            "SELECT group_id, member_id, score * ranq_raised() AS score,
                    row_number() OVER (PARTITION BY group_id ORDER BY score DESC, updated_at, member_id) AS `rank`
             FROM ranq_scores"
                .into(),
        ),
        ..Default::default()
    };
    let source = env.source().await.with_custom_sql(custom).await.unwrap();
    assert_eq!(source.top_n(&[1, 2]).await.unwrap().groups.len(), 2, "no error raised: the query reads");
    for (errno, transient, group_specific) in [
        (1205, true, true),
        (1213, true, true),
        (1290, true, true),
        (1836, true, true),
        (1146, false, false),
        (1365, false, true),
    ] {
        execute(&sql, "DELETE FROM ranq_raise").await;
        execute(&sql, &format!("INSERT INTO ranq_raise VALUES ({errno})")).await;
        let error = source.top_n(&[1, 2]).await.expect_err("the server raised an error");
        assert_eq!(error.is_transient(), transient, "{errno}: {error}");
        if !transient {
            assert_eq!(error.may_be_group_specific(), group_specific, "{errno}: {error}");
        }
    }
    source.close().await;
    env.cleanup().await;
}

/// The checksum an earlier release recorded for migration 1, whose first line's comment has been
/// reworded since: SHA-384 of that text, as the database stored it.
const MIGRATION_1_AS_SHIPPED: &str =
    "ab30c9e6ddfa7b2e7dfc8dafe0b311c9b2d45b295424fd9ae284a6b832c81e983bde4618569cd4abf478aa8fc0ab23fb";

async fn recorded_checksum(sql: &Sql) -> Vec<u8> {
    let query = "SELECT checksum FROM _sqlx_migrations WHERE version = 1";
    match sql {
        Sql::Postgres(pool) => sqlx::query_scalar(query).fetch_one(pool).await.unwrap(),
        Sql::Sqlite(pool) => sqlx::query_scalar(query).fetch_one(pool).await.unwrap(),
        Sql::MySql(_) => unreachable!("MySQL has a migration set of its own"),
    }
}

/// `ranq migrate` on a database an earlier release migrated, when the migration's text has
/// changed only in a comment since: it migrates again (sqlx alone would refuse the changed
/// checksum), and any other recorded checksum is still refused.
async fn a_database_migrated_by_an_earlier_release_migrates_again(dialect: Dialect) {
    let env = TestEnv::new(dialect).await;
    let sql = env.sql().await;
    let migrate = || env.ranq().arg("migrate").output().unwrap();
    assert!(migrate().status.success());
    let current = recorded_checksum(&sql).await;
    let literal = |hex: &str| match dialect {
        Dialect::Postgres => format!("'\\x{hex}'::bytea"),
        _ => format!("X'{hex}'"),
    };
    execute(
        &sql,
        &format!("UPDATE _sqlx_migrations SET checksum = {} WHERE version = 1", literal(MIGRATION_1_AS_SHIPPED)),
    )
    .await;
    let out = migrate();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(recorded_checksum(&sql).await, current, "the current checksum is recorded in place of the old one");

    // A migration changed in any other way is refused, as sqlx refuses it.
    execute(&sql, &format!("UPDATE _sqlx_migrations SET checksum = {} WHERE version = 1", literal(&"00".repeat(48))))
        .await;
    let out = migrate();
    assert!(!out.status.success(), "a checksum ranq never shipped must not be adopted");
    env.cleanup().await;
}

on_each_dialect!(a_database_migrated_by_an_earlier_release_migrates_again, [
    postgres => Postgres,
    sqlite => Sqlite,
]);
