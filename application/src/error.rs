//! Errors of the use cases, one enum the HTTP edge maps to status codes.

use berth_domain::bulk::BulkError;
use berth_domain::catalog::CatalogError;
use berth_domain::keyring::KeyRingError;
use berth_domain::profile::ProfileError;
use berth_domain::server::ServerError;
use berth_domain::tool_call::ToolCallError;
use berth_domain::user::UserError;
use berth_domain::FieldError;
use cqrs_es::AggregateError;

use crate::ports::CipherError;
use crate::read_guard::StaleRead;

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A catalog rule refused the command.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A server rule refused the command.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A bulk operation rule refused the command.
    #[error(transparent)]
    Bulk(#[from] BulkError),
    /// A gateway profile rule refused the command.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// A tool call's record was refused.
    #[error(transparent)]
    ToolCall(#[from] ToolCallError),
    /// A user rule refused the command.
    #[error(transparent)]
    User(#[from] UserError),
    /// Input named something that does not exist or is otherwise invalid before it
    /// reached an aggregate.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// The caller may not see what it named: answered exactly as if it did not exist.
    #[error("{0}")]
    Hidden(String),
    /// The caller may see it, but its role or ownership does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// Concurrent writers kept winning after every retry.
    #[error("the resource was changed concurrently too many times; try again")]
    Conflict,
    /// A fact the command was decided on changed before its events were stored; nothing
    /// was stored ([`crate::read_guard`]).
    #[error(transparent)]
    StaleRead(#[from] StaleRead),
    /// The database could not be reached.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A secret could not be sealed or opened.
    #[error(transparent)]
    Cipher(#[from] CipherError),
    /// Anything else; the cause is logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// Maps what cqrs-es reports for a command on an aggregate with errors `E`.
    pub fn from_aggregate<E>(err: AggregateError<E>) -> Self
    where
        E: std::error::Error + Into<AppError>,
    {
        match err {
            AggregateError::UserError(e) => e.into(),
            AggregateError::AggregateConflict => Self::Conflict,
            AggregateError::DatabaseConnectionError(e) => Self::Unavailable(e.to_string()),
            AggregateError::DeserializationError(e) => {
                Self::Internal(format!("stored event does not deserialize: {e}"))
            }
            AggregateError::UnexpectedError(e) => match e.downcast::<StaleRead>() {
                Ok(stale) => Self::StaleRead(*stale),
                Err(e) => Self::Internal(e.to_string()),
            },
        }
    }
}

impl From<KeyRingError> for AppError {
    fn from(e: KeyRingError) -> Self {
        Self::Internal(e.to_string())
    }
}
