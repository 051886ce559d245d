//! The MCP gateway: `/mcp`, where MCP clients reach the tools of every running server
//! their caller may use, through the official SDK's Streamable HTTP server.
//!
//! Each HTTP request is authenticated here (Berth's keys and tokens) and handed to the
//! SDK with the caller attached; the SDK runs the protocol (sessions for the revisions
//! that have them, stateless requests for those that do not) and calls
//! [`session::GatewaySession`] for each method. Tools come from the directory the event
//! feed keeps ([`directory_feed`]); calls go to the upstream sessions the process manager
//! opened, and each is recorded as an event ([`record`]).

mod caller;
pub mod directory_feed;
mod record;
mod route;
mod session;

use std::sync::Arc;

use berth_application::gateway::Directory;
use berth_infrastructure::mcp::McpSessionPool;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

pub use route::{configure, MCP_PATH};

use crate::http::state::Bus;

/// The largest request body `/mcp` accepts.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// What every gateway session shares.
pub(crate) struct Shared {
    pub directory: Arc<Directory>,
    pub sessions: Arc<McpSessionPool>,
    pub bus: Arc<Bus>,
}

/// The gateway as the HTTP server holds it.
pub struct Gateway {
    service: StreamableHttpService<session::GatewaySession, LocalSessionManager>,
    stop: CancellationToken,
}

impl Gateway {
    /// A gateway offering what `directory` lists, calling through `sessions`, recording
    /// through `bus`.
    pub fn new(directory: Arc<Directory>, sessions: Arc<McpSessionPool>, bus: Arc<Bus>) -> Self {
        let shared = Arc::new(Shared {
            directory,
            sessions,
            bus,
        });
        let stop = CancellationToken::new();
        let config = StreamableHttpServerConfig::default()
            .with_cancellation_token(stop.child_token())
            // Every request must carry a Berth credential, which a page a browser was
            // tricked into loading (DNS rebinding) does not have: the Host check that
            // protects unauthenticated local servers would only refuse Berth's own
            // public names. Browser origins are refused outright.
            .disable_allowed_hosts()
            .enforce_origin_validation()
            .with_max_request_body_bytes(MAX_REQUEST_BYTES);
        let service = StreamableHttpService::new(
            move || Ok(session::GatewaySession::new(Arc::clone(&shared))),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        Self { service, stop }
    }

    /// Ends every session (Berth is stopping).
    pub fn close(&self) {
        self.stop.cancel();
    }
}
