//! Node to node: what one `berth serve` asks of another on the same database.
//!
//! A server's container or process runs on one node, the active worker that started it
//! (recorded on the server as `node`), and its MCP session (a stdio server can have only
//! one client) and its output are there. Every other node reaches them through that node's
//! routes under [`PREFIX`], with the installation's node token: the gateway's calls (an
//! MCP session per server, which that node's proxy passes on to its own session) and the
//! logs.

pub mod placement;
mod proxy;
pub mod routes;

/// Where the node routes are.
pub const PREFIX: &str = "/internal/v1";
