//! Berth's use cases: commands with metadata, bounded retry on conflicts, secret sealing,
//! and the ports (traits) the infrastructure implements.

pub mod access;
pub mod aggregate_cache;
pub mod bulk;
pub mod catalog;
pub mod commands;
pub mod error;
pub mod gateway;
pub mod identity;
pub mod metadata;
pub mod new_stream;
pub mod ports;
pub mod process_manager;
pub mod read_guard;
pub mod receipt;
pub mod redaction;
pub mod runtime;
pub mod runtime_set;
pub mod servers;

pub use commands::CommandBus;
pub use error::AppError;
pub use metadata::{Actor, CommandMetadata};
pub use receipt::Receipt;
