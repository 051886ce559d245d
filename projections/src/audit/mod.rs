//! The audit read model: one row per event, with who, what, which target, when, why.

mod projector;
mod query;
mod summary;

pub use projector::{AuditProjector, NAME, UNKNOWN_ACTOR};
pub use query::{audit_batch, list_audit, AuditEntry, AuditFilter};
