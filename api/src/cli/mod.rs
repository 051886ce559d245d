//! The `berth` command line: its arguments and settings, and what each one-shot command
//! does against the database (the running Berth's embedded cluster when there is one).

pub mod args;
pub mod audit;
pub mod catalog_import;
pub mod clients;
pub mod commands;
pub mod config;
pub mod events_tail;
pub mod events_transfer;
pub mod keys;
pub mod logging;
pub mod mcp;
pub mod replay;
pub mod table;
pub mod users;
