//! The tool calls read model: every call through the gateway, by server, newest first,
//! for `GET /servers/{id}/calls`.

mod projector;
mod query;

pub use projector::{CallsProjector, NAME, TABLES};
pub use query::{list_calls, CallFilter, CallView};
