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
pub(crate) mod calls;
pub mod directory_feed;
mod extras;
mod limits;
mod owners;
mod record;
mod redacted;
pub mod revocations;
pub(crate) mod route;
mod session;
pub mod stored_sessions;

use std::sync::Arc;

use berth_application::gateway::{BreakerPolicy, Directory, Guards, DEFAULT_MAX_IN_FLIGHT};
use berth_infrastructure::mcp::McpSessionPool;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

pub use calls::RATE_LIMITED;
pub use route::{configure, MCP_PATH};

use self::limits::CallLimits;
use crate::http::metrics::Metrics;
use crate::http::rate_limit::RateLimitOptions;
use crate::http::state::Bus;

/// How the gateway behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayOptions {
    /// Tool calls per second (and burst) each API key may make; `0` per second: no limit.
    pub calls_per_key: RateLimitOptions,
    /// Calls per second (and burst) each API key may make of any one tool.
    pub calls_per_tool: RateLimitOptions,
    /// When a server's circuit opens, and for how long.
    pub breaker: BreakerPolicy,
    /// Calls in flight to one server at most; more wait (within their timeout).
    pub max_in_flight: usize,
    /// Browser origins allowed to call `/mcp` (e.g. `https://app.example.com:443`);
    /// empty: requests that carry an `Origin` are refused.
    pub allowed_origins: Vec<String>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            calls_per_key: RateLimitOptions {
                per_second: 100,
                burst: 200,
            },
            calls_per_tool: RateLimitOptions {
                per_second: 50,
                burst: 100,
            },
            breaker: BreakerPolicy::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            allowed_origins: Vec::new(),
        }
    }
}

/// The largest request body `/mcp` accepts.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// What every gateway session shares.
pub(crate) struct Shared {
    pub directory: Arc<Directory>,
    pub progress: Arc<directory_feed::DirectoryProgress>,
    pub sessions: Arc<McpSessionPool>,
    pub bus: Arc<Bus>,
    pub guards: Arc<Guards>,
    pub limits: CallLimits,
    pub metrics: Arc<Metrics>,
    /// The call records being appended, waited for when Berth stops.
    pub records: tokio_util::task::TaskTracker,
}

/// The gateway as the HTTP server holds it.
pub struct Gateway {
    service: StreamableHttpService<session::GatewaySession, LocalSessionManager>,
    manager: Arc<LocalSessionManager>,
    owners: owners::SessionOwners,
    stored: stored_sessions::StoredSessions,
    shared: Arc<Shared>,
    guards: Arc<Guards>,
    stop: CancellationToken,
}

impl Gateway {
    /// A gateway offering what `directory` lists (as far as `progress` says it got),
    /// calling through `sessions`, recording through `bus` and in `metrics`.
    pub fn new(
        directory: Arc<Directory>,
        progress: Arc<directory_feed::DirectoryProgress>,
        sessions: Arc<McpSessionPool>,
        bus: Arc<Bus>,
        metrics: Arc<Metrics>,
        stored: stored_sessions::StoredSessions,
        options: &GatewayOptions,
    ) -> Self {
        let guards = Arc::new(Guards::new(
            options.breaker,
            options.max_in_flight,
            Arc::clone(&directory),
        ));
        let shared = Arc::new(Shared {
            directory,
            progress,
            sessions,
            bus,
            guards: Arc::clone(&guards),
            limits: CallLimits::new(options.calls_per_key, options.calls_per_tool),
            metrics,
            records: tokio_util::task::TaskTracker::new(),
        });
        let stop = CancellationToken::new();
        let mut config = StreamableHttpServerConfig::default()
            .with_cancellation_token(stop.child_token())
            // Every request must carry a Berth credential, which a page a browser was
            // tricked into loading (DNS rebinding) does not have: the Host check that
            // protects unauthenticated local servers would only refuse Berth's own
            // public names. Browser origins are refused unless allowed.
            .disable_allowed_hosts()
            .with_allowed_origins(options.allowed_origins.clone())
            .enforce_origin_validation()
            .with_max_request_body_bytes(MAX_REQUEST_BYTES);
        // A session opened on another Berth on the database is taken up here.
        config.session_store = Some(Arc::new(stored.clone()));
        let for_sessions = Arc::clone(&shared);
        let manager = Arc::new(LocalSessionManager::default());
        let service = StreamableHttpService::new(
            move || Ok(session::GatewaySession::new(Arc::clone(&for_sessions))),
            Arc::clone(&manager),
            config,
        );
        Self {
            service,
            manager,
            owners: owners::SessionOwners::default(),
            stored,
            shared,
            guards,
            stop,
        }
    }

    /// `caller`'s profile `name`, if they have one.
    pub(crate) async fn profile(
        &self,
        caller: &berth_application::access::Caller,
        name: &str,
    ) -> Result<Option<berth_domain::profile::Profile>, berth_application::AppError> {
        berth_application::gateway::profiles::find_profile(&self.shared.bus, caller, name).await
    }

    /// Who opened `session`: this Berth's memory, else the database's (remembered from
    /// then on); `None` when no Berth knows it.
    pub(crate) async fn owner_of(
        &self,
        session: &str,
    ) -> Result<
        Option<owners::Binding>,
        rmcp::transport::streamable_http_server::session::store::SessionStoreError,
    > {
        if let Some(owner) = self.owners.get(session) {
            return Ok(Some(owner));
        }
        let owner = self.stored.owner(session).await?;
        if let Some(owner) = &owner {
            self.owners.opened(session, owner.clone());
        }
        Ok(owner)
    }

    /// Remembers, here and in the database, that `binding` opened `session`.
    pub(crate) async fn opened(&self, session: &str, binding: owners::Binding) {
        if let Err(e) = self.stored.opened(session, &binding).await {
            tracing::warn!(error = %e, "cannot record a gateway session; only this Berth can serve it");
        }
        self.owners.opened(session, binding);
    }

    /// Ends every session of `user_id` (opened with `key_id` only, when given): its
    /// credential was revoked or its user disabled.
    pub async fn end_sessions_of(&self, user_id: uuid::Uuid, key_id: Option<uuid::Uuid>) {
        use rmcp::transport::streamable_http_server::SessionManager;
        // Every Berth does this on the same event; the first to come forgets the rows.
        if let Err(e) = self.stored.end_of(user_id, key_id).await {
            tracing::debug!(error = %e, "cannot forget the stored sessions of a revoked credential");
        }
        let ended = self
            .owners
            .take(|b| b.user_id == user_id && key_id.is_none_or(|key| b.key_id == key));
        for session in ended {
            if let Err(e) = self.manager.close_session(&session.into()).await {
                tracing::debug!(error = %e, "a gateway session did not close cleanly");
            }
        }
    }

    /// The servers' guards (circuits and calls in flight).
    pub fn guards(&self) -> &Arc<Guards> {
        &self.guards
    }

    /// Ends every session (Berth is stopping).
    pub fn close(&self) {
        self.stop.cancel();
    }

    /// Waits (at most `timeout`) until the records of the calls answered so far are
    /// appended: a clean stop loses none, and the last checkpoint covers them.
    pub async fn records_written(&self, timeout: std::time::Duration) {
        self.shared.records.close();
        if tokio::time::timeout(timeout, self.shared.records.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tool call records were still being written at stop");
        }
    }
}
