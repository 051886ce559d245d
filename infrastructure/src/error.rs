//! Errors of the storage adapters.

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database answered with an error, or the connection failed.
    #[error("database error: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool.
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A stored row does not have the expected shape.
    #[error("stored data is malformed: {0}")]
    Malformed(String),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
}

impl StoreError {
    /// Whether the cause is the database being unreachable rather than a bad statement.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Pool(_) => true,
            Self::Database(e) => e.is_closed() || e.as_db_error().is_none(),
            _ => false,
        }
    }
}

/// `error` with every cause after it (`a: b: c`): what a person needs to act on a failure
/// whose reason is several layers down (an address refused inside a connection error).
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
