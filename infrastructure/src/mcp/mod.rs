//! Berth's MCP client side, on the official SDK (`rmcp`): one session per running server
//! ([`Upstream`]), kept by [`McpSessionPool`] from the server's start to its stop and shared
//! by the process manager's handshakes and health checks and by the gateway's calls.
//!
//! A stdio server has one input and one output, so it can have one client only; this
//! pool is that client, and every request anyone makes of the server goes through it
//! (the SDK gives each its own JSON-RPC id and routes the answers back).

mod client;
mod pool;
mod tools;
mod upstream;

pub use client::UpstreamClient;
pub use pool::McpSessionPool;
pub use upstream::{HttpClients, Upstream, UpstreamError};

/// The largest single message (a stdio line, an HTTP body or event) read from a server,
/// so that a broken server cannot make Berth buffer without end.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The most `tools/list` pages followed before the server is judged to be looping.
pub const MAX_TOOL_PAGES: usize = 100;

#[cfg(test)]
mod tests;
