//! TLS to both services, against servers of the test's own with certificates it made: Postgres in
//! every `sslmode`, with `sslrootcert` and with a client certificate; the whole fleet on a
//! `rediss://` Redis verified against the test's CA, and with mutual TLS. A wrong CA, a TLS
//! client on a plaintext port and the reverse each give one line naming the URL and what to
//! check, with the exit code of a configuration mistake (2) or of a service away (1), and never a
//! hang.

use std::process::Output;
use std::time::{Duration, Instant};

use ranq_tests::tls::{TestCa, TlsMariaDb, TlsPostgres, TlsRedis};
use ranq_tests::{Dialect, Proc, TestEnv, eventually, free_port, truth};
use serde_json::Value;

/// Runs `cmd`, failing the test if it takes longer than `limit`: a TLS mistake must end in an
/// error, never in a wait.
fn output_within(cmd: &mut std::process::Command, limit: Duration) -> Output {
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// How many connections to the private cluster use TLS right now (read over plaintext).
async fn tls_connections(pg: &TlsPostgres) -> i64 {
    let admin = sqlx::PgPool::connect(&pg.url("postgres", "sslmode=disable")).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_ssl WHERE ssl").fetch_one(&admin).await.unwrap();
    admin.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_is_read_over_tls_in_every_sslmode_and_a_wrong_ca_is_a_configuration_error() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let ca = TestCa::new(&env.dir.join("ca"), "a");
    let other = TestCa::new(&env.dir.join("other"), "b");
    let pg = TlsPostgres::start(&ca, &env.dir.join("pg"));
    let root = format!("sslrootcert={}", ca.ca().display());
    let plain = ranq_tests::Sql::Postgres(sqlx::PgPool::connect(&pg.url("postgres", "sslmode=disable")).await.unwrap());

    let verified = pg.url("postgres", &format!("sslmode=verify-full&{root}"));
    for args in [&["migrate"][..], &["seed", "--groups", "20", "--members", "10"]] {
        let out = output_within(env.ranq().env("DATABASE_URL", &verified).args(args), Duration::from_secs(30));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }

    let cache = env.cache().await;
    let groups: Vec<i64> = (1..=20).collect();
    for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
        let params = if mode == "disable" { "sslmode=disable".to_owned() } else { format!("sslmode={mode}&{root}") };
        let source = ranq_db::Source::connect(&pg.url("postgres", &params), 2).await.unwrap();
        ranq_worker::Refresher::new(source.clone(), cache.clone()).refresh(&groups).await.unwrap();
        let encrypted = tls_connections(&pg).await;
        if mode == "disable" {
            assert_eq!(encrypted, 0, "sslmode=disable read in plaintext");
        } else {
            assert!(encrypted >= 1, "sslmode={mode} read over TLS");
        }
        source.close().await;
        for &group in &groups {
            assert_eq!(cache.snapshot(group).await.unwrap().unwrap().entries, truth(&plain, group).await, "{mode}");
        }
    }

    // A CA that did not sign the server's certificate: one line, exit 2, the URL named.
    let wrong = pg.url("postgres", &format!("sslmode=verify-full&sslrootcert={}", other.ca().display()));
    let out = output_within(env.ranq().env("DATABASE_URL", &wrong).args(["migrate"]), Duration::from_secs(30));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("TLS to the database at postgres://postgres@localhost") && err.contains("sslrootcert"),
        "{err}"
    );

    // A user that must show a client certificate: with it, in; without it, refused.
    let with_cert = pg.url(
        "certuser",
        &format!(
            "sslmode=verify-full&{root}&sslcert={}&sslkey={}",
            ca.cert("client").display(),
            ca.key("client").display()
        ),
    );
    let out = output_within(env.ranq().env("DATABASE_URL", &with_cert).args(["migrate"]), Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
    let without = pg.url("certuser", &format!("sslmode=verify-full&{root}"));
    let out = output_within(env.ranq().env("DATABASE_URL", &without).args(["migrate"]), Duration::from_secs(30));
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("certificate"), "{err}");
    env.cleanup().await;
}

/// MySQL/MariaDB's `ssl-mode` and `ssl-ca`, against a server that refuses plaintext: every
/// mode that asks for TLS reads the source, `DISABLED` is refused, a CA that did not sign the
/// server's certificate (or a CA file that is not there) is a one-line configuration error, and a
/// user that must show a client certificate gets in with `ssl-cert`/`ssl-key` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_is_read_from_a_tls_only_mariadb_and_a_wrong_ca_is_a_configuration_error() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let ca = TestCa::new(&env.dir.join("ca"), "a");
    let other = TestCa::new(&env.dir.join("other"), "b");
    let db = TlsMariaDb::start(&ca, &env.dir.join("mariadb"));
    db.admin(&ca, "CREATE DATABASE app; CREATE USER certuser@'%' REQUIRE X509; GRANT ALL ON app.* TO certuser@'%'")
        .await;
    let ca_param = format!("ssl-ca={}", ca.ca().display());
    let verified = db.url("root", "app", &format!("ssl-mode=VERIFY_IDENTITY&{ca_param}"));
    for args in [&["migrate"][..], &["seed", "--groups", "20", "--members", "10"]] {
        let out = output_within(env.ranq().env("DATABASE_URL", &verified).args(args), Duration::from_secs(30));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let plain = ranq_tests::Sql::MySql(sqlx::MySqlPool::connect(&verified).await.unwrap());
    let cache = env.cache().await;
    let groups: Vec<i64> = (1..=20).collect();
    for mode in ["REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"] {
        let source = ranq_db::Source::connect(&db.url("root", "app", &format!("ssl-mode={mode}&{ca_param}")), 2)
            .await
            .unwrap_or_else(|e| panic!("ssl-mode={mode}: {e}"));
        ranq_worker::Refresher::new(source.clone(), cache.clone()).refresh(&groups).await.unwrap();
        source.close().await;
        for &group in &groups {
            assert_eq!(cache.snapshot(group).await.unwrap().unwrap().entries, truth(&plain, group).await, "{mode}");
        }
    }
    let refused = db.url("root", "app", "ssl-mode=DISABLED");
    assert!(ranq_db::Source::connect(&refused, 1).await.is_err(), "the server takes TLS connections only");

    let missing = env.dir.join("no-such-ca.pem");
    for ca_file in [other.ca(), missing] {
        let wrong = db.url("root", "app", &format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={}", ca_file.display()));
        let out = output_within(env.ranq().env("DATABASE_URL", &wrong).args(["migrate"]), Duration::from_secs(30));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("TLS to the database at mysql://root@localhost") && err.contains("ssl-ca"), "{err}");
    }

    let with_cert = db.url(
        "certuser",
        "app",
        &format!(
            "ssl-mode=VERIFY_IDENTITY&{ca_param}&ssl-cert={}&ssl-key={}",
            ca.cert("client").display(),
            ca.key("client").display()
        ),
    );
    let out = output_within(env.ranq().env("DATABASE_URL", &with_cert).args(["migrate"]), Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
    let without = db.url("certuser", "app", &format!("ssl-mode=VERIFY_IDENTITY&{ca_param}"));
    let out = output_within(env.ranq().env("DATABASE_URL", &without).args(["migrate"]), Duration::from_secs(30));
    assert!(!out.status.success() && stderr(&out).contains("certuser"), "{}", stderr(&out));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_runs_on_a_tls_redis_verified_against_its_ca() {
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(40, 20).await;
    let sql = env.sql().await;
    let ca = TestCa::new(&env.dir.join("ca"), "a");
    let other = TestCa::new(&env.dir.join("other"), "b");
    let redis = TlsRedis::start(&ca, false);
    let ca_file = ca.ca().display().to_string();
    let tls = [("REDIS_URL", redis.url()), ("RANQ_REDIS__TLS_CA_FILE", ca_file.clone())];
    let on_tls = |args: &[&str]| {
        let mut cmd = env.ranq();
        cmd.args(args).envs(tls.iter().map(|(k, v)| (k, v)));
        cmd
    };

    let port = free_port();
    let mut worker = Proc::spawn("worker", on_tls(&["worker"]));
    let mut serve = Proc::spawn("serve", on_tls(&["serve", "--listen", &format!("127.0.0.1:{port}")]));
    let refreshed =
        output_within(&mut on_tls(&["refresh", "--all", "--wait", "--timeout", "60s"]), Duration::from_secs(90));
    assert!(refreshed.status.success(), "{}", stderr(&refreshed));
    let http = reqwest::Client::new();
    let body: Value = eventually(Duration::from_secs(15), "serve answers over the TLS Redis", || async {
        let response = http.get(format!("http://127.0.0.1:{port}/v1/groups/7/top")).send().await.ok()?;
        (response.status() == 200).then_some(response.json().await.ok()?)
    })
    .await;
    assert_eq!(body["status"], "FRESH", "{body}");
    let entries: Vec<ranq_core::Entry> = serde_json::from_value(body["entries"].clone()).unwrap();
    assert_eq!(entries, truth(&sql, 7).await);
    let status = output_within(&mut on_tls(&["status", "--json"]), Duration::from_secs(20));
    let report: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!((report["groups"]["cached"].as_u64(), report["workers"]["alive"].as_u64()), (Some(40), Some(1)));
    assert!(worker.terminate(Duration::from_secs(20)).success());
    assert!(serve.terminate(Duration::from_secs(20)).success());

    // A CA that did not sign the server's certificate: configuration, exit 2, one line.
    let out = output_within(
        env.ranq().env("REDIS_URL", redis.url()).env("RANQ_REDIS__TLS_CA_FILE", other.ca()).args(["status"]),
        Duration::from_secs(20),
    );
    let err = stderr(&out);
    assert_eq!((out.status.code(), err.trim().lines().count()), (Some(2), 1), "{err}");
    assert!(err.contains(&format!("TLS to Redis at {}", redis.url())) && err.contains("tls_ca_file"), "{err}");

    // TLS spoken to a plaintext Redis: the handshake is never answered; ranq finds out why.
    let plain_server = ranq_launch::RedisServer::start().unwrap();
    let plaintext = plain_server.url().replacen("redis://", "rediss://", 1);
    let out = output_within(
        env.ranq().env("REDIS_URL", &plaintext).env("RANQ_REDIS__TLS_CA_FILE", &ca_file).args(["status"]),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("answers in plaintext, not TLS: use redis://"), "{}", stderr(&out));

    // Plaintext spoken to the TLS port: the server is there but says nothing ranq understands.
    let out = output_within(
        env.ranq().env("REDIS_URL", format!("redis://localhost:{}", redis.port)).args(["status"]),
        Duration::from_secs(30),
    );
    let err = stderr(&out);
    assert_eq!((out.status.code(), err.trim().lines().count()), (Some(1), 1), "{err}");
    assert!(err.contains("rediss://"), "the error suggests the other scheme: {err}");

    // The TLS settings do not stand in the way of a plaintext URL.
    let out = output_within(
        env.ranq().env("REDIS_URL", &env.redis_url).env("RANQ_REDIS__TLS_CA_FILE", &ca_file).args(["status", "--json"]),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "a plaintext URL with redis.tls_ca_file set: {}", stderr(&out));

    // Unverified TLS only when asked for, and then said.
    let insecure = format!("{}/#insecure", redis.url());
    let out = output_within(env.ranq().env("REDIS_URL", &insecure).args(["status", "--json"]), Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("not verified"), "{}", stderr(&out));
    env.cleanup().await;
}

#[tokio::test]
async fn a_redis_that_asks_for_a_client_certificate_gets_one_when_configured() {
    let env = TestEnv::new(Dialect::Sqlite).await;
    let ca = TestCa::new(&env.dir.join("ca"), "a");
    let redis = TlsRedis::start(&ca, true);
    let status = |cert: bool| {
        let mut cmd = env.ranq();
        cmd.env("REDIS_URL", redis.url()).env("RANQ_REDIS__TLS_CA_FILE", ca.ca()).args(["status", "--json"]);
        if cert {
            cmd.env("RANQ_REDIS__TLS_CERT_FILE", ca.cert("client")).env("RANQ_REDIS__TLS_KEY_FILE", ca.key("client"));
        }
        output_within(&mut cmd, Duration::from_secs(20))
    };
    let without = status(false);
    assert!(!without.status.success(), "no client certificate, no connection");
    assert_eq!(stderr(&without).trim().lines().count(), 1, "{}", stderr(&without));
    let with = status(true);
    assert!(with.status.success(), "{}", stderr(&with));
    env.cleanup().await;
}
