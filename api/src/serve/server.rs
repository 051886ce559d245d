//! The composition root of `berth serve`: database, migrations, master key, predefined
//! catalog, admin token, projections and the HTTP server, started in that order and
//! stopped in reverse. Tests start the same stack in-process on port 0.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::HttpServer;
use anyhow::Context;
use berth_application::gateway::Directory;
use berth_application::{Actor, CommandBus, CommandMetadata};
use berth_infrastructure::db::Database;
use berth_infrastructure::envelope::EnvelopeCipher;
use berth_infrastructure::event_store::PostgresEventRepository;
use berth_infrastructure::feed::fanout::EventFanout;
use berth_infrastructure::mcp::{HttpClients, McpSessionPool};
use berth_infrastructure::tls::OutboundTls;

use crate::gateway::directory_feed::DirectoryProgress;
use crate::gateway::stored_sessions::StoredSessions;
use crate::gateway::Gateway;
use crate::node::placement::NodePlacement;
use crate::node::routes::NodeRoutes;
use berth_infrastructure::feed::lock::Lease;
use berth_infrastructure::migrations;
use berth_infrastructure::ownership::PgStreamOwners;
use berth_projections::Projections;
use deadpool_postgres::Pool;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::http::api_document::DocumentFetcher;
use crate::http::app;
use crate::http::auth::Authenticator;
use crate::http::live::{LiveOptions, LiveStreams};
use crate::http::metrics::Metrics;
use crate::http::rate_limit::{RateLimitOptions, RateLimiter};
use crate::http::state::AppState;
use crate::serve::bootstrap;
use crate::serve::checkpoints;
use crate::serve::database::{ClusterUse, OpenDatabase};
use crate::serve::predefined;
use crate::serve::role::{self, NodeRole};
use crate::serve::runtimes::{self, BackgroundIntervals, RuntimeChoice};
use crate::serve::worker;
use berth_application::bulk::{BulkDriver, BulkDriverOptions};
use berth_application::process_manager::{ProcessManager, ProcessManagerOptions};
use berth_application::runtime::ContainerRuntime;
use berth_infrastructure::checkpoint::LogSigner;
use berth_infrastructure::credentials::CredentialKeys;
use berth_projections::wait_until_reached;

/// How long projections get to finish their batch when stopping.
const PROJECTION_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long tokens live unless configured: long enough for a session of work, short
/// enough that a revoked key's tokens die soon.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// The file in the data directory that holds the URL a running `berth serve` listens on.
pub const URL_FILE: &str = "berth.url";

/// How often the event log's head is signed unless configured otherwise.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// How long the first start waits for the administrator's key to become usable.
const BOOTSTRAP_WAIT: Duration = Duration::from_secs(30);

/// What `start_server` needs.
#[derive(Clone)]
pub struct ServeConfig {
    /// Where the admin token, the master key and the embedded cluster live.
    pub data_dir: PathBuf,
    /// The address to listen on; port 0 picks a free port.
    pub listen: String,
    /// An external PostgreSQL server; `None` starts the embedded cluster.
    pub database_url: Option<SecretString>,
    /// HTTP worker threads.
    pub workers: usize,
    /// Database connections shared by requests and projections.
    pub pool_size: usize,
    /// How long in-flight requests get to finish when stopping.
    pub shutdown_timeout: Duration,
    /// Which runtime runs MCP servers.
    pub runtime: RuntimeChoice,
    /// How the process manager behaves.
    pub process_manager: ProcessManagerOptions,
    /// How often drift detection and health checks run.
    pub intervals: BackgroundIntervals,
    /// Which parts of Berth this process runs (`--role`).
    pub role: NodeRole,
    /// The name this process goes by among the nodes on the database (`--node`); `None`:
    /// the host name and the port.
    pub node: Option<String>,
    /// Where the other nodes reach this one (`http://host:port`); `None`: the address it
    /// listens on, with the host name for an unspecified address.
    pub advertise_url: Option<String>,
    /// Whether the active worker drives the runtime (the process manager follows the
    /// feed, reconciles and checks health). Off in tests that only record commands.
    pub drive_runtime: bool,
    /// How bulk operations are driven. They are driven whatever `drive_runtime` says:
    /// the driver only records commands.
    pub bulk: BulkDriverOptions,
    /// How the live event streams behave (heartbeat, buffers).
    pub live: LiveOptions,
    /// How the MCP gateway limits and guards calls.
    pub gateway: crate::gateway::GatewayOptions,
    /// Networks beyond the public internet that registered APIs may be reached at
    /// (CIDR networks or addresses; checked at start).
    pub upstream_allowed_networks: Vec<String>,
    /// A PEM file of certificate authorities trusted, besides the system's, by the HTTPS
    /// connections Berth makes (registered APIs, remote MCP servers).
    pub upstream_ca_file: Option<PathBuf>,
    /// Requests per second (and burst) each credential may send; `0` per second
    /// disables the limit.
    pub rate_limit: RateLimitOptions,
    /// How long the tokens of `POST /api/v1/auth/token` live.
    pub token_ttl: Duration,
    /// How often the event log's head is signed (and once more at stop).
    pub checkpoint_interval: Duration,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field("workers", &self.workers)
            .field("pool_size", &self.pool_size)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("runtime", &self.runtime)
            .field("process_manager", &self.process_manager)
            .field("intervals", &self.intervals)
            .field("role", &self.role)
            .field("node", &self.node)
            .field("advertise_url", &self.advertise_url)
            .field("drive_runtime", &self.drive_runtime)
            .field("bulk", &self.bulk)
            .field("live", &self.live)
            .field("rate_limit", &self.rate_limit)
            .field("token_ttl", &self.token_ttl)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .finish()
    }
}

impl ServeConfig {
    /// Defaults: `127.0.0.1:7070`, the embedded cluster, 2 workers, 16 connections.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen: "127.0.0.1:7070".into(),
            database_url: None,
            workers: 2,
            pool_size: 16,
            shutdown_timeout: Duration::from_secs(10),
            runtime: RuntimeChoice::Auto,
            process_manager: ProcessManagerOptions::default(),
            intervals: BackgroundIntervals::default(),
            role: NodeRole::All,
            node: None,
            advertise_url: None,
            drive_runtime: true,
            bulk: BulkDriverOptions::default(),
            live: LiveOptions::default(),
            rate_limit: RateLimitOptions::default(),
            gateway: crate::gateway::GatewayOptions::default(),
            upstream_allowed_networks: Vec::new(),
            upstream_ca_file: None,
            token_ttl: DEFAULT_TOKEN_TTL,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
        }
    }

    /// Uses the PostgreSQL server at `url` instead of the embedded cluster.
    pub fn with_database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(SecretString::from(url.into()));
        self
    }

    /// Listens on `listen` (e.g. `127.0.0.1:0`).
    pub fn with_listen(mut self, listen: impl Into<String>) -> Self {
        self.listen = listen.into();
        self
    }
}

/// A started Berth: its address and admin token, and what stopping it needs.
pub struct RunningServer {
    addr: SocketAddr,
    node: String,
    admin_token: Option<SecretString>,
    admin_token_path: PathBuf,
    http: ServerHandle,
    http_task: JoinHandle<std::io::Result<()>>,
    shutdown: watch::Sender<bool>,
    projection_tasks: Vec<JoinHandle<()>>,
    checkpointer: Option<Checkpointer>,
    live: EventFanout,
    gateway: Arc<Gateway>,
    node_routes: Option<Arc<NodeRoutes>>,
    runtime: Arc<dyn ContainerRuntime>,
    shutdown_timeout: Duration,
    data_dir: PathBuf,
    pool: Pool,
    database: OpenDatabase,
}

impl RunningServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The name it goes by among the nodes on its database.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bootstrap administrator's key, from `<data_dir>/admin-token` (empty when that
    /// file is gone). Handle with care.
    pub fn admin_token(&self) -> &str {
        self.admin_token
            .as_ref()
            .map(|t| t.expose_secret())
            .unwrap_or_default()
    }

    /// Where the admin token is stored.
    pub fn admin_token_path(&self) -> &Path {
        &self.admin_token_path
    }

    /// The database it uses.
    pub fn database(&self) -> &Database {
        self.database.database()
    }

    /// Ends the live event streams, stops accepting connections, lets in-flight
    /// requests finish, stops the projections, closes the pool and stops the embedded
    /// cluster if there is one.
    pub async fn stop(self) -> anyhow::Result<()> {
        // Live streams never finish on their own: end them so the graceful stop need
        // not wait out its timeout.
        self.live.close();
        self.gateway.close();
        if let Some(node_routes) = &self.node_routes {
            node_routes.close();
        }
        self.http.stop(true).await;
        let served = self.http_task.await;
        tracing::info!("HTTP server stopped");
        self.gateway.records_written(PROJECTION_STOP_TIMEOUT).await;
        let _ = self.shutdown.send(true);
        for task in self.projection_tasks {
            if tokio::time::timeout(PROJECTION_STOP_TIMEOUT, task)
                .await
                .is_err()
            {
                tracing::warn!("a projection did not stop in time");
            }
        }
        // Nothing drives the runtime any more: end what must not outlive Berth.
        self.runtime.shutdown(self.shutdown_timeout).await;
        // Nothing writes any more: the last checkpoint covers everything written.
        if let Some(checkpointer) = self.checkpointer {
            let _ = checkpointer.stop.send(true);
            if tokio::time::timeout(PROJECTION_STOP_TIMEOUT, checkpointer.task)
                .await
                .is_err()
            {
                tracing::warn!("the last checkpoint was not signed in time");
            }
        }
        // Unless another Berth wrote its own address since.
        let url_file = self.data_dir.join(URL_FILE);
        if std::fs::read_to_string(&url_file)
            .is_ok_and(|url| url.trim() == format!("http://{}", self.addr))
        {
            let _ = std::fs::remove_file(&url_file);
        }
        if let Err(e) = berth_infrastructure::nodes::remove(&self.pool, &self.node).await {
            tracing::warn!(error = %e, "cannot record that this node stopped");
        }
        self.pool.close();
        self.database.close().await;
        served
            .context("the HTTP server task failed")?
            .context("the HTTP server failed")
    }
}

/// Starts Berth as `berth serve` does and returns once it accepts requests.
pub async fn start_server(config: ServeConfig) -> anyhow::Result<RunningServer> {
    create_private_dir(&config.data_dir)?;
    let database = OpenDatabase::open(
        config.database_url.as_ref(),
        &config.data_dir,
        ClusterUse::Serve,
    )
    .await?;
    match start_on(&config, &database).await {
        Ok(parts) => Ok(RunningServer {
            addr: parts.addr,
            node: parts.node,
            admin_token: parts.admin_token,
            admin_token_path: parts.admin_token_path,
            http: parts.http,
            http_task: parts.http_task,
            shutdown: parts.shutdown,
            projection_tasks: parts.projection_tasks,
            checkpointer: parts.checkpointer,
            live: parts.live,
            gateway: parts.gateway,
            node_routes: parts.node_routes,
            runtime: parts.runtime,
            shutdown_timeout: config.shutdown_timeout,
            data_dir: config.data_dir.clone(),
            pool: parts.pool,
            database,
        }),
        Err(e) => {
            database.close().await;
            Err(e)
        }
    }
}

struct Started {
    addr: SocketAddr,
    node: String,
    admin_token: Option<SecretString>,
    admin_token_path: PathBuf,
    http: ServerHandle,
    http_task: JoinHandle<std::io::Result<()>>,
    shutdown: watch::Sender<bool>,
    projection_tasks: Vec<JoinHandle<()>>,
    checkpointer: Option<Checkpointer>,
    live: EventFanout,
    gateway: Arc<Gateway>,
    node_routes: Option<Arc<NodeRoutes>>,
    runtime: Arc<dyn ContainerRuntime>,
    pool: Pool,
}

async fn start_on(config: &ServeConfig, database: &OpenDatabase) -> anyhow::Result<Started> {
    let db = database.database().clone();
    let applied = migrations::run(&db).await.context("applying migrations")?;
    tracing::info!(applied, "database schema is up to date");
    let pool = db
        .pool(config.pool_size)
        .context("creating the connection pool")?;

    let listener =
        TcpListener::bind(&config.listen).with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let node = config
        .node
        .clone()
        .unwrap_or_else(|| role::default_node_name(addr.port()));
    let node_url = config
        .advertise_url
        .clone()
        .unwrap_or_else(|| advertised_url(addr, &node));
    berth_infrastructure::nodes::register(&pool, &node, config.role.as_str(), &node_url)
        .await
        .context("recording this node")?;
    tracing::info!(
        node,
        role = config.role.as_str(),
        url = node_url,
        "node recorded"
    );

    let masters = crate::serve::master_keys::load_masters(&config.data_dir)?;
    tracing::info!(key_id = masters.current_key_id(), "master key loaded");
    let credentials = Arc::new(
        CredentialKeys::load(&pool, &masters)
            .await
            .context("loading the credential keys")?,
    );
    let installation = berth_infrastructure::db::installation_id(&pool)
        .await
        .context("reading the installation id")?;
    let tls = OutboundTls::from_optional(config.upstream_ca_file.as_deref())
        .context("upstream_ca_file")?;
    let (runtimes, outside) = runtimes::open_runtime(
        config.role.works().then_some(config.runtime),
        &config.data_dir,
        installation,
        &config.upstream_allowed_networks,
        &tls,
    )
    .await?;
    let mut bus = CommandBus::new(
        PostgresEventRepository::new(pool.clone()),
        Arc::new(EnvelopeCipher::new(pool.clone(), masters)),
    );
    if config.drive_runtime && config.role == NodeRole::All {
        // A Berth that drives no runtime cannot tell which another one has.
        bus = bus.running_on(runtimes.kinds());
    }
    let bus = Arc::new(bus);
    let runtime: Arc<dyn ContainerRuntime> = runtimes;
    let local = tls
        .client_builder()
        .build()
        .context("building the HTTP client of MCP servers")?;
    let documents = DocumentFetcher::new(outside.clone());
    let nodes = Arc::new(NodePlacement::new(
        node.clone(),
        pool.clone(),
        credentials.node_token(),
        local.clone(),
    ));
    let sessions = McpSessionPool::new(
        runtime.clone(),
        nodes.clone(),
        HttpClients {
            local,
            outside: outside.client,
        },
    );
    let node_routes = config.role.works().then(|| {
        Arc::new(NodeRoutes::new(
            sessions.clone(),
            runtime.clone(),
            credentials.clone(),
            nodes.clone(),
        ))
    });
    let pm = ProcessManager::new(
        bus.clone(),
        runtime.clone(),
        sessions.clone(),
        ProcessManagerOptions {
            node: node.clone(),
            ..config.process_manager.clone()
        },
    );

    let shipped = predefined::definitions()?;
    let sync = CommandMetadata::new(Actor::System("catalog-sync".into()));
    let changed = bus
        .sync_predefined_catalog(&sync, shipped)
        .await
        .context("synchronising the predefined catalog")?;
    tracing::info!(changed, "predefined catalog synchronised");

    let admin = bootstrap::ensure_admin(&bus, &credentials, &config.data_dir).await?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    // Before the HTTP server: no stream may subscribe before the fan-out knows its start.
    let (live, live_task) = EventFanout::start(
        &db,
        pool.clone(),
        config.live.fanout.clone(),
        shutdown_rx.clone(),
    )
    .await
    .context("starting the live event fan-out")?;
    let shutdown_rx_gateway = shutdown_rx.clone();
    let shutdown_rx_revocations = shutdown_rx.clone();
    let shutdown_rx_identities = shutdown_rx.clone();
    let mut projection_tasks = vec![
        live_task,
        crate::http::live::memory::spawn_release_after_closing(live.clone(), shutdown_rx.clone()),
        worker::spawn_heartbeat(db.clone(), node.clone(), shutdown_rx.clone()),
    ];
    let checkpointer = if config.role.works() {
        // Every worker node keeps the read models (each projection's lock picks one).
        projection_tasks.extend(
            Arc::new(Projections::new(db.clone(), pool.clone())).spawn(shutdown_rx.clone()),
        );
        let duties = worker::Duties {
            pm: config.drive_runtime.then(|| pm.clone()),
            runtime: runtime.clone(),
            stop_grace: config.process_manager.stop_grace,
            intervals: config.intervals.clone(),
            bulk: Arc::new(BulkDriver::new(
                bus.clone(),
                PostgresEventRepository::new(pool.clone()),
                config.bulk.clone(),
            )),
            gateway_sessions: StoredSessions::new(pool.clone()),
            mcp: sessions.clone(),
            placement: nodes.clone(),
        };
        // Taken here when free, so that a single Berth runs its servers from its first
        // request on; otherwise this node stands by.
        let first = Lease::try_acquire(&db, worker::WORKER_LEASE, None)
            .await
            .context("trying the worker lease")?;
        if first.is_some() {
            nodes.set_active(true);
        }
        projection_tasks.push(worker::spawn(
            duties,
            db,
            pool.clone(),
            node.clone(),
            first,
            shutdown_rx.clone(),
        ));
        let signer =
            LogSigner::from_env_or_file(&config.data_dir).context("loading the log signing key")?;
        // Stopped on its own, last: the checkpoint it signs at stop must find no projector
        // transaction open, or it could not cover the last events.
        let (stop, checkpointer_stop) = watch::channel(false);
        Some(Checkpointer {
            stop,
            task: checkpoints::spawn_checkpointer(
                pool.clone(),
                signer,
                config.data_dir.clone(),
                config.checkpoint_interval,
                checkpointer_stop,
            ),
        })
    } else {
        None
    };

    if let Some(position) = admin.position {
        // The administrator's key must work on the first request.
        let reached = wait_until_reached(
            &pool,
            berth_projections::identity::NAME,
            position,
            BOOTSTRAP_WAIT,
        )
        .await
        .context("waiting for the identity projection")?;
        if !reached {
            tracing::warn!(
                "the identity projection has not caught up yet; the admin key works once it has"
            );
        }
    }

    let directory = Arc::new(Directory::new());
    let directory_progress = Arc::new(DirectoryProgress::new(pool.clone()));
    projection_tasks.push(crate::gateway::directory_feed::spawn(
        directory.clone(),
        directory_progress.clone(),
        bus.clone(),
        &live,
        shutdown_rx_gateway,
    ));
    let metrics = Arc::new(Metrics::new());
    let gateway = Arc::new(Gateway::new(
        directory,
        directory_progress,
        sessions,
        bus.clone(),
        metrics.clone(),
        StoredSessions::new(pool.clone()),
        &config.gateway,
    ));
    projection_tasks.push(crate::gateway::revocations::spawn(
        gateway.clone(),
        &live,
        shutdown_rx_revocations,
    ));
    let auth = Arc::new(Authenticator::new(pool.clone(), credentials));
    projection_tasks.push(crate::http::identity_feed::spawn(
        auth.clone(),
        pool.clone(),
        &live,
        shutdown_rx_identities,
    ));
    let state = AppState {
        gateway: gateway.clone(),
        bus,
        pm,
        pool: pool.clone(),
        metrics,
        auth,
        token_ttl: config.token_ttl,
        live: LiveStreams {
            fanout: live.clone(),
            options: config.live.clone(),
        },
        rate_limiter: Arc::new(RateLimiter::new(config.rate_limit)),
        owners: Arc::new(PgStreamOwners::new(pool.clone())),
        documents,
        role: config.role,
        nodes,
        node_routes: node_routes.clone(),
    };
    let server = HttpServer::new(move || app::build(state.clone()))
        .workers(config.workers.max(1))
        .disable_signals()
        .shutdown_timeout(config.shutdown_timeout.as_secs())
        .listen(listener)
        .with_context(|| format!("listening on {addr}"));
    let server = match server {
        Ok(server) => server.run(),
        Err(e) => {
            let _ = shutdown.send(true);
            return Err(e);
        }
    };
    let http = server.handle();
    let http_task = tokio::spawn(server);
    tracing::info!("listening on http://{addr}");
    tracing::info!(
        "the console is at http://{addr}/ (sign in with an API key, e.g. the one in {})",
        config
            .data_dir
            .join(crate::serve::admin_token::ADMIN_TOKEN_FILE)
            .display()
    );
    // For the commands run beside it (`berth events tail`): where this Berth listens.
    let url_file = config.data_dir.join(URL_FILE);
    if let Err(e) = std::fs::write(&url_file, format!("http://{addr}\n")) {
        tracing::warn!(path = %url_file.display(), error = %e, "cannot record where Berth listens");
    }
    Ok(Started {
        addr,
        node,
        admin_token: admin.token,
        admin_token_path: admin.path,
        http,
        http_task,
        shutdown,
        projection_tasks,
        checkpointer,
        live,
        gateway,
        node_routes,
        runtime,
        pool,
    })
}

/// The task signing checkpoints of the log, and what stops it.
struct Checkpointer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Creates the data directory listable by its owner only. Others may traverse it
/// (mode 0711): when Berth runs as root, the embedded cluster runs as `postgres` and must
/// reach `<data_dir>/pg`, and each process server runs as a user of its own and must
/// reach its home below `<data_dir>/process-logs`; the key and token files themselves are
/// mode 0600. A directory that exists already is made searchable the same way.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("reading the data directory {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o001 == 0 {
        std::fs::set_permissions(
            dir,
            std::fs::Permissions::from_mode((mode & 0o7777) | 0o001),
        )
        .with_context(|| format!("making the data directory {} searchable", dir.display()))?;
    }
    Ok(())
}

/// Where the other nodes reach a node listening on `addr`: that address, or for an
/// unspecified one (`0.0.0.0`) the host part of the node's default name.
fn advertised_url(addr: SocketAddr, node: &str) -> String {
    if addr.ip().is_unspecified() {
        let host = node.rsplit_once(':').map_or(node, |(host, _)| host);
        format!("http://{host}:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}
