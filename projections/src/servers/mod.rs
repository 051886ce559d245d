//! The servers read model: one row per live server with its config, secret key names,
//! lifecycle state and health.

mod history;
mod projector;
mod query;
mod replay;
mod row;

pub use history::{server_history, FieldChange, HistoryEntry};
pub use projector::{ServerProjector, NAME, TABLES};
pub use query::{get_server, list_servers, server_ids_in, ServerFilter, ServerView, SECRET_MASK};
pub use replay::{server_as_of, AsOf, PastServer};
