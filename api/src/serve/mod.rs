//! The composition root of `berth serve`: the database, the runtimes, the process
//! manager, the bulk driver, the checkpointer and the HTTP server, started in order and
//! stopped in reverse.

pub mod admin_token;
pub mod bootstrap;
pub mod bulk;
pub mod checkpoints;
pub mod database;
pub mod master_keys;
pub mod predefined;
pub mod runtimes;
pub mod server;

pub use server::{start_server, RunningServer, ServeConfig};
