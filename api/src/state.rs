//! What every request handler shares.

use std::sync::Arc;

use berth_application::CommandBus;
use berth_infrastructure::event_store::PostgresEventRepository;
use deadpool_postgres::Pool;

use crate::auth::Authenticator;
use crate::live::LiveStreams;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::runtime_setup::Pm;

/// The command bus as the API runs it: events in PostgreSQL.
pub type Bus = CommandBus<PostgresEventRepository>;

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
    /// Token buckets per credential.
    pub rate_limiter: Arc<RateLimiter>,
}
