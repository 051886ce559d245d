//! The audit read model: one row per event, with who, what, which target, when, why.

mod projector;
mod query;
mod summary;

pub(crate) use projector::action;
pub use projector::{AuditProjector, NAME, TABLES, UNKNOWN_ACTOR};
pub use query::{audit_batch, event_link, list_audit, AuditEntry, AuditFilter};
