//! Bulk operations: one lifecycle action (start, stop, restart, enable, disable, delete)
//! over many servers, with a recorded outcome per server and an overall result.
//!
//! The aggregate only keeps the books: which servers are targets, which have an
//! outcome, and when all have. Issuing the per-server commands is the application's
//! driver's job; it reports each result back with [`BulkCommand::RecordOutcome`].

mod aggregate;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{BulkCommand, BulkError, BulkOperation, BulkTarget, MAX_TARGETS};
pub use events::{BulkAction, BulkEvent, BulkState, TargetOutcome};
