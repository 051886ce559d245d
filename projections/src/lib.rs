//! Berth's read models, built from the event feed by tracking subscriptions:
//!
//! - `catalog`: live catalog entries with the tools their servers offer;
//! - `servers`: live servers with config, secret key names (never values), state, health;
//! - `audit`: one line per event saying who did what to which target, when and why;
//! - `bulk`: bulk operations with their progress and every target's outcome;
//! - `identity`: users, their roles and their API keys (as keyed hashes);
//! - `calls`: every tool call through the MCP gateway, by server.
//!
//! Each projector applies a batch of events and the runner saves its checkpoint in the
//! same transaction, so a crash never loses or repeats an event. The query functions
//! read the tables; [`wait_until_reached`] gives read-your-writes, and any projection can
//! be rebuilt from the first event with [`Projections::rebuild`], beside the live tables
//! and swapped in atomically ([`blue_green`]).

pub mod audit;
pub mod blue_green;
pub mod bulk;
pub mod calls;
pub mod catalog;
mod codec;
mod copy_rows;
pub mod identity;
mod page;
mod runners;
pub mod servers;
mod shadow_tables;
mod status;
mod wait;

pub use audit::{audit_batch, list_audit, AuditEntry, AuditFilter, AuditProjector};
pub use blue_green::{RebuildOptions, RebuildReport};
pub use bulk::{get_bulk_operation, BulkOperationView, BulkProjector, BulkTargetView};
pub use calls::{list_calls, CallFilter, CallView, CallsProjector};
pub use catalog::{
    get_catalog_entry, list_catalog, CatalogEntryView, CatalogFilter, CatalogProjector,
};
pub use identity::{ApiKeyView, IdentityProjector, KeyCandidate, UserView};
pub use page::{Page, PageRequest};
pub use runners::{Projections, RebuildError};
pub use servers::{get_server, list_servers, ServerFilter, ServerProjector, ServerView};
pub use status::{sample_status, status, ProjectionStatus};
pub use wait::{wait_until_reached, wait_until_released};

/// The names of the projections, as used by `rebuild`, `status` and checkpoints.
pub const PROJECTION_NAMES: [&str; 6] = [
    catalog::NAME,
    servers::NAME,
    audit::NAME,
    bulk::NAME,
    identity::NAME,
    calls::NAME,
];
