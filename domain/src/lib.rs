//! Berth's domain: the `CatalogEntry`, `Server`, `BulkOperation`, `User`, `Profile` and `ToolCall` aggregates, their
//! commands, events and errors, and the rules that decide which command may produce
//! which events.
//!
//! Everything here is pure: no clock, no I/O, no randomness. What the outside knows
//! (the catalog entry a server is made from, sealed secrets, the time) arrives inside
//! commands, resolved by the application layer.

pub mod bulk;
pub mod catalog;
mod decide;
pub mod id;
pub mod keyring;
pub mod profile;
pub mod server;
pub mod tool_call;
pub mod upcasting;
pub mod user;
pub mod validation;

pub use id::{AggregateId, BulkId, CatalogEntryId, ServerId, ToolCallId, UserId};
pub use validation::FieldError;
