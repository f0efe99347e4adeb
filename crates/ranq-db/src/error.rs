//! Database errors, worded for the operator who has to fix them.

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL {0}: use postgres://… or sqlite:path/to/file.db")]
    UnsupportedUrl(String),
    #[error("cannot connect to the database at {url}: {source} (is it running, and is DATABASE_URL right?)")]
    Connect { url: String, source: sqlx::Error },
    #[error("applying migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{what} failed: {source}{hint}")]
    Query { what: &'static str, source: sqlx::Error, hint: &'static str },
    #[error("{0}")]
    Seed(String),
    #[error("{0}")]
    Unsupported(&'static str),
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

    /// Whether retrying later may succeed (connection trouble) rather than never (bad SQL).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::Query { source, .. } => matches!(
                source,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed
            ),
            _ => false,
        }
    }
}
