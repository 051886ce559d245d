//! Berth's edges and its composition root: the `berth` command line ([`cli`]), the HTTP
//! API ([`http`]) and the wiring that starts everything `berth serve` runs ([`serve`]).
//!
//! The arrows run one way: `cli` uses `serve` and `http`, `serve` builds `http`, and
//! `http` uses neither. Commands are `POST`/`PUT`/`PATCH`/`DELETE` and answer with the
//! global position of the events they wrote; queries are `GET`, read the projections and
//! accept `min_position` for read-your-writes. Every error is an RFC 9457 problem
//! document, produced in one place ([`http::problem`]).

#![warn(missing_docs)]

pub mod audit_file;
pub mod cli;
pub mod console;
pub mod gateway;
pub mod http;
pub mod node;
pub mod owner_only_file;
pub mod serve;

pub use serve::{start_server, RunningServer, ServeConfig};
