//! Database errors, worded for the operator who has to fix them.

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL {0}: use postgres://…, mysql://… (or mariadb://…) or sqlite:path/to/file.db")]
    UnsupportedUrl(String),
    #[error("cannot connect to the database at {url}: {source} (is it running, and is DATABASE_URL right?)")]
    Connect { url: String, source: sqlx::Error },
    #[error(
        "TLS to the database at {url} failed: {source} (check sslmode, and sslrootcert against the server's \
         certificate, or for MySQL/MariaDB ssl-mode and ssl-ca; sslcert and sslkey if it asks for a client \
         certificate)"
    )]
    Tls { url: String, source: sqlx::Error },
    #[error("applying migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{what} failed: {source}{hint}")]
    Query { what: &'static str, source: sqlx::Error, hint: &'static str },
    #[error("{0}")]
    Seed(String),
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("{key} {problem} (see docs/source-data.md, \"Custom source SQL\")")]
    CustomSql { key: &'static str, problem: String },
}

impl DbError {
    /// Wraps a query error, adding the hint to migrate when the schema is missing.
    pub(crate) fn query(what: &'static str) -> impl Fn(sqlx::Error) -> Self {
        move |source| {
            let missing = source.to_string().contains("ranq_groups") || source.to_string().contains("ranq_scores");
            let hint = if missing { " (run `ranq migrate` first)" } else { "" };
            Self::Query { what, source, hint }
        }
    }

    /// The error of a failed connect to `url`: TLS trouble (a certificate that does not verify,
    /// a server without TLS under `sslmode=require`, a certificate file that cannot be read) told
    /// apart from a server that is away.
    pub(crate) fn connect(url: &str) -> impl Fn(sqlx::Error) -> Self + '_ {
        // A file that is not there is a certificate the URL names, unless the URL names none
        // (then it is a Unix socket of a server that is not running).
        let names_files = ["sslrootcert", "sslcert", "sslkey", "ssl-ca", "sslca", "ssl-cert", "ssl-key"]
            .iter()
            .any(|key| url.contains(key));
        move |source| {
            let url = ranq_core::redact_url(url);
            match source {
                sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => Self::Tls { url, source },
                sqlx::Error::Io(ref e)
                    if (names_files && e.kind() == std::io::ErrorKind::NotFound)
                        || e.to_string().to_ascii_lowercase().contains("certificate") =>
                {
                    Self::Tls { url, source }
                }
                source => Self::Connect { url, source },
            }
        }
    }

    /// Whether the statement failed because a table it names does not exist.
    pub(crate) fn is_missing_table(&self) -> bool {
        let Self::Query { source: sqlx::Error::Database(e), .. } = self else { return false };
        // Postgres 42P01, MySQL/MariaDB 42S02 (error 1146); SQLite says it in words.
        matches!(e.code().as_deref(), Some("42P01" | "42S02")) || e.message().contains("no such table")
    }

    /// Whether the mistake is in the configuration (exit code 2) rather than the database being
    /// away (exit code 1).
    pub fn is_configuration(&self) -> bool {
        matches!(self, Self::UnsupportedUrl(_) | Self::Tls { .. } | Self::CustomSql { .. })
    }

    /// Whether retrying the same statement later may succeed (connection trouble, a deadlock, a
    /// server restarting) rather than fail the same way (bad SQL, data that breaks the query).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::Tls { .. } => false,
            Self::Query { source, .. } => match source {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                // SQLSTATE classes 08 (connection), 40 (rolled back: serialization, deadlock),
                // 53 (out of resources), 57 (operator intervention: shutdown, cancel).
                sqlx::Error::Database(e) => {
                    e.code().is_some_and(|code| ["08", "40", "53", "57"].iter().any(|class| code.starts_with(class)))
                        || mysql_error_number(e.as_ref()).is_some_and(|n| MYSQL_TRANSIENT.contains(&n))
                        // SQLite: busy or locked.
                        || e.message().contains("database is locked")
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether the error may come from the rows of some groups only (data that breaks a cast or a
    /// division, a custom query that raises for some ids), so that splitting the batch can isolate
    /// them. Errors in the statement or the schema itself — an unknown column after a migration,
    /// missing privileges — fail every group alike: splitting would only multiply the queries
    /// and quarantine healthy groups.
    pub fn may_be_group_specific(&self) -> bool {
        match self {
            Self::CustomSql { .. } => true,
            Self::Query { source, .. } => match source {
                // A column whose type changed under ranq fails every group alike.
                sqlx::Error::ColumnDecode { source, .. } => !source.to_string().contains("mismatched types"),
                sqlx::Error::Decode(_) => true,
                sqlx::Error::Database(e) => match e.code() {
                    // SQLSTATE classes 42 (syntax, undefined column or table, privilege), 0A
                    // (not supported), 3D/3F (no such database/schema), 28 (authorization).
                    Some(code) if code.len() == 5 => {
                        !["42", "0A", "3D", "3F", "28"].iter().any(|class| code.starts_with(class))
                    }
                    // SQLite has no SQLSTATE; splitting there costs a few local queries.
                    _ => true,
                },
                _ => false,
            },
            _ => false,
        }
    }
}

/// MySQL/MariaDB errors that a retry may get past, most of them during a failover or a restart:
/// 1205 lock wait timeout, 1213 deadlock, 2006 server gone away, 2013 connection lost mid-query,
/// 1290 and 1836 read-only (a replica that is being promoted), 1053 server shutting down,
/// 1927 connection killed, 1040 too many connections, 4031 disconnected for inactivity. Most
/// carry the catch-all SQLSTATE HY000, so the SQLSTATE classes alone would miss them.
const MYSQL_TRANSIENT: [u16; 10] = [1205, 1213, 2006, 2013, 1290, 1836, 1053, 1927, 1040, 4031];

/// The MySQL/MariaDB error number, for an error from that driver.
fn mysql_error_number(e: &dyn sqlx::error::DatabaseError) -> Option<u16> {
    e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().map(sqlx::mysql::MySqlDatabaseError::number)
}
