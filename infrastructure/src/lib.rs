//! Berth's adapters: the PostgreSQL event store and its ordered feed, migrations, the
//! embedded PostgreSQL cluster, and the secret cipher.

pub mod administrators;
pub mod announce;
mod append;
pub mod chain;
pub mod checkpoint;
pub mod child;
pub mod cipher;
pub mod credentials;
pub mod db;
pub mod embedded;
pub mod envelope;
pub mod error;
pub mod event_store;
pub mod feed;
pub mod group_commit;
pub mod key_file;
pub mod key_store;
pub mod mcp;
pub mod memory;
pub mod migrations;
pub mod nodes;
pub mod ownership;
pub mod runtime;
pub mod stream;
pub mod tls;
pub mod transfer;
pub mod verify;

pub use error::StoreError;
