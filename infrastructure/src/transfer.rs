//! Moving the event log between stores: [`export_events`] writes it as JSON Lines, one
//! event per line with every column, in feed order; [`import_events`] writes such a file
//! into an empty store, keeping positions, ids, timestamps, payloads, metadata and
//! hashes, so the imported store's read models, hash chains and feed order are the
//! source's.
//!
//! A line looks like this (one line in the file; wrapped here):
//!
//! ```text
//! {"position":12,"transaction_id":1043,"event_id":"0193…","aggregate_type":"server",
//!  "aggregate_id":"0193…","sequence":3,"event_type":"ServerStartRequested",
//!  "event_version":"1","payload":{…},"metadata":{"actor":"user:ann",…},
//!  "recorded_at":"2025-01-31T09:12:44.123456Z","prev_hash":"9f2c…","hash":"41d0…"}
//! ```
//!
//! `transaction_id` is the transaction the event was first committed in (for an event
//! that was itself imported, the one recorded in its `origin_transaction_id`), so a
//! store exported, imported and exported again gives the same file byte for byte.
//!
//! The wrapped data keys can travel beside the events in a second file
//! ([`export_data_keys`], [`DataKeys`]): with them and the master key, the imported
//! store's secrets open and its API keys verify.

mod error;
mod export;
mod import;
mod keys;
mod line;

pub use error::TransferError;
pub use export::{export_events, ExportReport};
pub use import::{import_events, ImportOptions, ImportReport};
pub use keys::{export_data_keys, DataKeyLine, DataKeys};
pub use line::{CheckpointLine, EventLine};
