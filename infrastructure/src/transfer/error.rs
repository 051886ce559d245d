//! Why an export or an import failed.

use crate::StoreError;

/// Why an export or an import failed. An import that fails writes nothing, except that
/// transactions it already committed stay when it had to split the file (see
/// [`super::import_events`]). The cause of a database or I/O failure is the error's
/// `source()`.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The store already holds events: importing would mix two histories.
    #[error(
        "the event store is not empty ({events} events, up to position {head}): events \
         can only be imported into an empty store; nothing was imported"
    )]
    NotEmpty {
        /// How many events it holds.
        events: i64,
        /// Its highest position.
        head: i64,
    },
    /// A line is not a well-formed event.
    #[error("line {line}{}: {message}", field.as_ref().map(|f| format!(", field `{f}`")).unwrap_or_default())]
    InvalidLine {
        /// The line number, from 1.
        line: u64,
        /// The field at fault, when one is.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The hash the store computed for an imported event differs from the one in the
    /// file: the line (or one before it in the same stream) was altered.
    #[error(
        "line {line}: the event at position {position} does not match its {field} \
         (the file was altered after it was exported); nothing was imported from its \
         transaction"
    )]
    Altered {
        /// The line number, from 1.
        line: u64,
        /// The event's position.
        position: i64,
        /// `hash` or `prev_hash`.
        field: &'static str,
    },
    /// The database refused a batch of lines (a duplicate position or event id, an
    /// event whose predecessor in its stream is not in the file, ...).
    #[error("lines {first_line} to {last_line}: the store refused the events")]
    Refused {
        /// The batch's first line.
        first_line: u64,
        /// The batch's last line.
        last_line: u64,
        /// The database's answer.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The store already holds data keys, which imported ones would clash with.
    #[error(
        "the store already holds {keys} data keys: data keys can only be imported into a \
         store that has none; nothing was imported"
    )]
    KeysNotEmpty {
        /// How many it holds.
        keys: i64,
    },
    /// A line of a keys file is not a well-formed data key.
    #[error("data keys line {line}{}: {message}", field.as_ref().map(|f| format!(", field `{f}`")).unwrap_or_default())]
    InvalidKeyLine {
        /// The line number, from 1.
        line: u64,
        /// The field at fault, when one is.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The database refused the data keys (a duplicate owner or key id, a key neither
    /// live nor destroyed).
    #[error("the store refused the data keys")]
    KeysRefused(#[source] tokio_postgres::Error),
    /// The input could not be read.
    #[error("reading line {line}")]
    Read {
        /// The line being read, from 1.
        line: u64,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The output could not be written.
    #[error("writing the export")]
    Write(#[source] std::io::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for TransferError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Store(StoreError::Database(e))
    }
}

impl From<deadpool_postgres::PoolError> for TransferError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Store(StoreError::Pool(e))
    }
}

impl TransferError {
    /// An [`TransferError::InvalidLine`].
    pub(super) fn invalid(line: u64, field: Option<&str>, message: impl Into<String>) -> Self {
        Self::InvalidLine {
            line,
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }
}
