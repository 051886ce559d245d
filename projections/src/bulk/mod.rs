//! The bulk operations read model: each operation's state and counts, and every
//! target's outcome, visible while the operation runs.

mod projector;
mod query;

pub use projector::{BulkProjector, NAME, TABLES};
pub use query::{get_bulk_operation, BulkOperationView, BulkTargetView};
