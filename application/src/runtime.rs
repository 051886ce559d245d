//! The container runtime port: what the process manager, the reconciler and the API need
//! from whatever actually runs MCP servers (Docker, local processes, later Kubernetes).
//!
//! Every operation is keyed by the server id and idempotent: the runtime names and
//! labels what it creates after the server, so repeating an action after a crash finds
//! what the first attempt made instead of making a second one.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use berth_domain::catalog::{Resources, RuntimeKind, RuntimeSpec, Transport};
use secrecy::SecretString;
use tokio::io::{AsyncRead, AsyncWrite};
use uuid::Uuid;

/// Everything needed to create one server's container or process.
pub struct LaunchSpec {
    /// The server.
    pub server_id: Uuid,
    /// Its owner (recorded as a label).
    pub owner: String,
    /// Its name (for people reading `docker ps`).
    pub name: String,
    /// How clients talk to it.
    pub transport: Transport,
    /// Image or command, from the catalog entry.
    pub runtime: RuntimeSpec,
    /// Environment: plain config and opened secrets. Secrets are opened only to build
    /// this and are never logged (`SecretString`).
    pub env: BTreeMap<String, SecretString>,
    /// Limits.
    pub resources: Resources,
}

impl fmt::Debug for LaunchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaunchSpec")
            .field("server_id", &self.server_id)
            .field("name", &self.name)
            .field("transport", &self.transport)
            .field("runtime", &self.runtime)
            .field("env_keys", &self.env.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What the runtime says about one server's container or process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    /// The server it belongs to (from its label).
    pub server_id: Uuid,
    /// The runtime's id for it.
    pub instance_id: String,
    /// Whether it runs.
    pub state: InstanceState,
}

/// The life of a container or process as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Stopped or died.
    Exited {
        /// Its exit code, when known.
        exit_code: Option<i64>,
        /// Whether the runtime killed it for exceeding its memory limit.
        oom_killed: bool,
    },
}

/// A byte stream to an MCP server over stdio: what the server writes, and its input.
pub struct StdioConnection {
    /// The server's standard output.
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    /// The server's standard input.
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
}

/// Where to reach an MCP server.
pub enum McpEndpoint {
    /// JSON-RPC over the server's standard input and output.
    Stdio(StdioConnection),
    /// Streamable HTTP at this URL.
    Http(String),
    /// Streamable HTTP at a server someone else runs, with the server's credential:
    /// reached only at addresses the administrator allows.
    Remote(RemoteEndpoint),
    /// Streamable HTTP at the Berth node that runs the server (which holds its only
    /// session), with the node token.
    Node(RemoteEndpoint),
}

/// Which node opens a server's MCP session: a server has one session, held by the node
/// that runs it, and every other node goes through that one.
#[async_trait]
pub trait Placement: Send + Sync {
    /// How to reach server `server_id` (spoken to over `transport`) from this node:
    /// `None` when this node runs it (or it runs nowhere yet), else the other node's
    /// endpoint for it.
    async fn reach(
        &self,
        server_id: Uuid,
        transport: Transport,
    ) -> Result<Option<RemoteEndpoint>, RuntimeError>;
}

/// The placement of a Berth that is the only node: every session is opened here.
pub struct HereOnly;

#[async_trait]
impl Placement for HereOnly {
    async fn reach(
        &self,
        _server_id: Uuid,
        _transport: Transport,
    ) -> Result<Option<RemoteEndpoint>, RuntimeError> {
        Ok(None)
    }
}

/// A remote MCP server and what its requests carry.
pub struct RemoteEndpoint {
    /// Its URL (which carries no credential: the entry's rules refuse one there).
    pub url: String,
    /// Headers every request carries (the credential's), kept secret.
    pub headers: Vec<(String, SecretString)>,
}

/// Why a runtime operation failed, in words a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The image is not present and cannot be pulled.
    #[error("image `{image}` is not available: {reason}")]
    ImageUnavailable {
        /// The image reference.
        image: String,
        /// What the engine said.
        reason: String,
    },
    /// The program to run does not exist or cannot be executed.
    #[error("cannot run `{command}`: {reason}")]
    CommandUnavailable {
        /// The program.
        command: String,
        /// What the system said.
        reason: String,
    },
    /// The server has no container or process.
    #[error("no container or process exists for this server")]
    NotFound,
    /// The engine cannot be reached.
    #[error("the container runtime is unavailable: {0}")]
    Unavailable(String),
    /// The runtime refused or failed the operation.
    #[error("{0}")]
    Failed(String),
}

/// Runs MCP servers.
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// `docker` or `process` (or both, for a [`crate::runtime_set::RuntimeSet`]).
    fn kind(&self) -> &'static str;

    /// Whether `instance_id` names a container or process this runtime made since Berth
    /// last started. A local process made before that ended with the Berth that ran it;
    /// one made since that is gone died (or was removed) on this Berth's watch.
    fn made_by_this_run(&self, _instance_id: &str) -> bool {
        false
    }

    /// Creates the server's container or process without starting it; when one exists
    /// already (a crash after creating it), returns that one. Returns the instance id.
    async fn create(&self, spec: &LaunchSpec) -> Result<String, RuntimeError>;

    /// Starts what `create` made; starting a running instance does nothing.
    async fn start(&self, server_id: Uuid) -> Result<(), RuntimeError>;

    /// Stops it, gracefully within `grace`, then by force. Missing or stopped: nothing.
    async fn stop(&self, server_id: Uuid, grace: Duration) -> Result<(), RuntimeError>;

    /// Removes it (stopping it by force if needed). Missing: nothing.
    async fn remove(&self, server_id: Uuid) -> Result<(), RuntimeError>;

    /// Berth is stopping: ends whatever cannot outlive it (local processes; containers
    /// keep running and are adopted at the next start).
    async fn shutdown(&self, _grace: Duration) {}

    /// Its status, or `None` when it has no container or process.
    async fn inspect(&self, server_id: Uuid) -> Result<Option<InstanceStatus>, RuntimeError>;

    /// [`ContainerRuntime::inspect`] of a server whose entry runs on `kind`: only that
    /// runtime is asked, so another one being unreachable does not hide the answer, and
    /// `kind`'s being unreachable is an error, never "it is gone".
    async fn inspect_as(
        &self,
        server_id: Uuid,
        _kind: RuntimeKind,
    ) -> Result<Option<InstanceStatus>, RuntimeError> {
        self.inspect(server_id).await
    }

    /// Every container or process this runtime manages for Berth.
    async fn list(&self) -> Result<Vec<InstanceStatus>, RuntimeError>;

    /// The last `tail` lines it wrote (stdout and stderr, in order).
    async fn logs(&self, server_id: Uuid, tail: usize) -> Result<Vec<String>, RuntimeError>;

    /// A stream of the lines it writes from now on (after the last `tail` lines).
    async fn follow_logs(
        &self,
        server_id: Uuid,
        tail: usize,
    ) -> Result<futures_util::stream::BoxStream<'static, Result<String, RuntimeError>>, RuntimeError>;

    /// How to talk MCP to it: its stdio, or its HTTP endpoint for `http` servers.
    async fn connect(
        &self,
        server_id: Uuid,
        transport: Transport,
    ) -> Result<McpEndpoint, RuntimeError>;
}

/// What an MCP handshake (`initialize`, then `tools/list`) found.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    /// The protocol version the server agreed to.
    pub protocol_version: String,
    /// The server's `serverInfo` (name, version).
    pub server_info: serde_json::Value,
    /// The tools it offers.
    pub tools: Vec<berth_domain::server::Tool>,
    /// Where an `http` server answered (`None` over stdio).
    pub endpoint: Option<String>,
    /// How long the exchange took.
    pub latency: Duration,
}

/// Why an MCP handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No answer in time.
    #[error("the server did not answer `{step}` within {timeout:?}")]
    Timeout {
        /// `initialize` or `tools/list`.
        step: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// The connection closed (the server exited?).
    #[error("the server closed the connection during `{step}`")]
    Closed {
        /// `initialize` or `tools/list`.
        step: &'static str,
    },
    /// It answered with an error or something that is not MCP.
    #[error("the server answered `{step}` wrongly: {detail}")]
    Protocol {
        /// `initialize` or `tools/list`.
        step: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// It could not be reached at all.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Berth's MCP client side: one session per running server, opened when it starts and
/// shared by the health checks and the gateway. A server speaking stdio has one input
/// and one output, so it can only ever have one client: this.
#[async_trait]
pub trait McpSessions: Send + Sync {
    /// Asks the server for its tools over its session, opening the session first (the
    /// `initialize` handshake) when it has none or its last one closed; everything
    /// within `timeout`. An `http` server that does not listen yet is retried until then.
    async fn probe(
        &self,
        server_id: Uuid,
        transport: Transport,
        timeout: Duration,
    ) -> Result<ProbeReport, ProbeError>;

    /// Ends the server's session: it is stopping, or a new container or process
    /// replaces the one the session talked to.
    async fn close(&self, server_id: Uuid);
}
