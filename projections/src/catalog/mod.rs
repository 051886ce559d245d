//! The catalog read model: live entries with the tools their servers offer.

mod projector;
mod query;

pub use projector::{CatalogProjector, NAME, TABLES};
pub use query::{get_catalog_entry, list_catalog, CatalogEntryView, CatalogFilter};
