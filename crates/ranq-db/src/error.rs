//! Database errors, worded for the operator who has to fix them.

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL {0}: use postgres://… or sqlite:path/to/file.db")]
    UnsupportedUrl(String),
    #[error("cannot connect to the database at {url}: {source} (is it running, and is DATABASE_URL right?)")]
    Connect { url: String, source: sqlx::Error },
    #[error(
        "TLS to the database at {url} failed: {source} (check sslmode, and sslrootcert against the server's \
         certificate; sslcert and sslkey if it asks for a client certificate)"
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
        move |source| {
            let url = ranq_core::redact_url(url);
            match source {
                sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => Self::Tls { url, source },
                sqlx::Error::Io(ref e) if e.to_string().to_ascii_lowercase().contains("certificate") => {
                    Self::Tls { url, source }
                }
                source => Self::Connect { url, source },
            }
        }
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
