//! Signed checkpoints of the event log: what `berth verify` holds the log to beyond its
//! hash chains.
//!
//! A hash chain per stream catches an altered or removed event in the middle of a
//! stream, but not a stream's tail cut off, nor an event rewritten with its hash
//! recomputed by someone who can write the table. A checkpoint closes that gap: it
//! names the log's head in feed order, how many events the log held up to it and a
//! digest chained over every event's hash in feed order, and is signed with an Ed25519
//! key that never enters the database. Whoever can write the database but not read that
//! key cannot make a changed log match a checkpoint, nor sign a new one.

mod digest;
mod record;
mod signing;
mod store;
mod verify;

pub use digest::LogDigest;
pub use record::SignedCheckpoint;
pub use signing::{LogSigner, SIGNING_KEY_ENV, SIGNING_KEY_FILE};
pub use store::{checkpoints, holds, keep, read_kept, record_checkpoint, LATEST_CHECKPOINT_FILE};
pub use verify::{verify_checkpoints, CheckpointBreak, CheckpointBreakKind, CheckpointReport};

use crate::StoreError;

/// Why checkpoints could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signing key could not be read or written.
    #[error("the log signing key: {0}")]
    Key(String),
    /// A stored or kept checkpoint is not well-formed.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
}

impl From<tokio_postgres::Error> for CheckpointError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for CheckpointError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Store(e.into())
    }
}
