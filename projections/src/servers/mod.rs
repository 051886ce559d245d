//! The servers read model: one row per live server with its config, secret key names,
//! lifecycle state and health.

mod projector;
mod query;
mod row;

pub use projector::{ServerProjector, NAME};
pub use query::{get_server, list_servers, ServerFilter, ServerView, SECRET_MASK};
