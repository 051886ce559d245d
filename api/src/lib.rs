//! Berth's HTTP API (actix-web) and the composition root of the `berth` binary.
//!
//! Commands are `POST`/`PUT`/`PATCH`/`DELETE` and answer with the global position of
//! the events they wrote; queries are `GET`, read the projections and accept
//! `min_position` for read-your-writes. Every error is an RFC 9457 problem document,
//! produced in one place ([`problem`]).

#![warn(missing_docs)]

pub mod access;
pub mod admin_token;
pub mod app;
pub mod audit_commands;
pub mod audit_file;
pub mod auth;
pub mod bootstrap;
pub mod bulk_setup;
pub mod checkpoint_setup;
pub mod cli;
pub mod commands;
pub mod config;
pub mod consistency;
pub mod database;
pub mod dto;
pub mod event_tail;
pub mod event_transfer;
pub mod extract;
pub mod key_commands;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod openapi;
pub mod openapi_rules;
pub mod owner_only_file;
pub mod pagination;
pub mod predefined;
pub mod problem;
pub mod rate_limit;
pub mod replay_commands;
pub mod request_id;
pub mod routes;
pub mod runtime_setup;
pub mod server;
pub mod state;
pub mod table;
pub mod user_commands;

pub use server::{start_server, RunningServer, ServeConfig};
