//! What every request handler shares.

use std::sync::Arc;

use berth_application::access::StreamOwners;
use berth_application::process_manager::ProcessManager;
use berth_application::CommandBus;
use berth_infrastructure::event_store::PostgresEventRepository;
use deadpool_postgres::Pool;

use crate::gateway::Gateway;
use crate::http::api_document::DocumentFetcher;
use crate::http::auth::Authenticator;
use crate::http::live::LiveStreams;
use crate::http::metrics::Metrics;
use crate::http::rate_limit::RateLimiter;

/// The command bus as the API runs it: events in PostgreSQL.
pub type Bus = CommandBus<PostgresEventRepository>;

/// The process manager as the API drives it.
pub type Pm = ProcessManager<PostgresEventRepository>;

/// Shared by every worker and request; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Runs commands.
    pub bus: Arc<Bus>,
    /// Drives the runtime; answers `test` and `logs`.
    pub pm: Arc<Pm>,
    /// Connections for queries (read models, the event feed).
    pub pool: Pool,
    /// HTTP and store metrics.
    pub metrics: Arc<Metrics>,
    /// Verifies API keys and tokens.
    pub auth: Arc<Authenticator>,
    /// How long the tokens of `POST /auth/token` live.
    pub token_ttl: std::time::Duration,
    /// The live event streams (SSE, WebSocket).
    pub live: LiveStreams,
    /// Who owns each stream, for the access rules.
    pub owners: Arc<dyn StreamOwners>,
    /// Token buckets per credential.
    pub rate_limiter: Arc<RateLimiter>,
    /// The MCP gateway.
    pub gateway: Arc<Gateway>,
    /// Fetches the OpenAPI documents registrations name by URL.
    pub documents: DocumentFetcher,
    /// Which parts of Berth this process runs.
    pub role: crate::serve::role::NodeRole,
    /// Where servers run, and how this node reaches the others.
    pub nodes: Arc<crate::node::placement::NodePlacement>,
    /// The routes other nodes call here (on a node that may run servers).
    pub node_routes: Option<Arc<crate::node::routes::NodeRoutes>>,
}
