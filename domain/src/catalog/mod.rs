//! The catalog: kinds of MCP servers anyone may instantiate.

mod aggregate;
mod definition;
pub mod openapi;

pub use aggregate::{CatalogCommand, CatalogEntry, CatalogError, CatalogEvent};
pub(crate) use definition::check_value;
pub use definition::{
    CatalogDefinition, CatalogKind, ConfigKey, GatewaySettings, Resources, RuntimeKind,
    RuntimeSpec, Transport, MAX_CALL_TIMEOUT_SECS,
};
