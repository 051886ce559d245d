//! Servers: one owner's instance of a catalog entry, with config, sealed secrets and a lifecycle.

mod aggregate;
mod config;
mod events;
mod sharing;
mod state;
#[cfg(test)]
mod tests;

pub use aggregate::{Server, ServerCommand, ServerError, MAX_REASON_BYTES};
pub use config::{validate_config, ConfigChange, SealedSecret};
pub use events::ServerEvent;
pub use sharing::{Sharing, MAX_SHARED_USERS};
pub use state::{Health, RestartPolicy, ServerState, Tool, MAX_INPUT_SCHEMA_BYTES};
