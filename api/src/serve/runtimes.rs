//! Choosing the container runtime (`--runtime auto|docker|process`) and running the
//! process manager's background work: following the event feed, reconciling every
//! server at start and periodically, and checking health.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_application::process_manager::EventRef;
use berth_application::runtime::ContainerRuntime;
use berth_application::runtime_set::RuntimeSet;
use berth_application::{Actor, CommandMetadata};
use berth_domain::server::ServerState;
use berth_infrastructure::db::Database;
use berth_infrastructure::feed::StoredEvent;
use berth_infrastructure::runtime::endpoint::address::AddressPolicy;
use berth_infrastructure::runtime::endpoint::{EndpointRuntime, EndpointSettings, Outside};
use berth_infrastructure::runtime::{DockerRuntime, ProcessRuntime};
use berth_infrastructure::tls::OutboundTls;
use berth_projections::servers::server_ids_in;
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::http::state::Pm;
use crate::serve::{follow_until_stopped, stopped};

/// Which runtime runs MCP servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeChoice {
    /// Local processes, and Docker beside them when its engine answers.
    #[default]
    Auto,
    /// Docker only (fails to start when the engine does not answer).
    Docker,
    /// Local processes only.
    Process,
}

/// Health checks running at the same time.
const HEALTH_CHECKS_AT_ONCE: usize = 8;

/// The subscription name of the process manager's checkpoint and lock.
pub const PROCESS_MANAGER: &str = "process-manager";

/// Opens the chosen runtimes: with `auto`, local processes always, and Docker beside
/// them when its engine answers, each running the entries of its kind; registered APIs
/// and remote MCP servers always, reaching the public internet and `allowed_networks`,
/// trusting `tls`; with the client that reaches those addresses. `None` (an API node,
/// which runs no server) opens neither Docker nor local processes.
pub async fn open_runtime(
    choice: Option<RuntimeChoice>,
    data_dir: &Path,
    installation: Uuid,
    allowed_networks: &[String],
    tls: &OutboundTls,
) -> anyhow::Result<(Arc<RuntimeSet>, Outside)> {
    let addresses = AddressPolicy::parse(allowed_networks)
        .map_err(|e| anyhow::anyhow!("upstream_allowed_networks: {e}"))?;
    let endpoints = EndpointRuntime::new(EndpointSettings {
        addresses,
        tls: tls.clone(),
        ..EndpointSettings::default()
    })
    .context("opening the runtime of registered APIs")?;
    let outside = endpoints.outside();
    let Some(choice) = choice else {
        let runtimes = RuntimeSet::endpoints_only(Arc::new(endpoints));
        return Ok((Arc::new(runtimes), outside));
    };
    let log_dir = data_dir.join("process-logs");
    // Whatever runtime is chosen now: a dead Berth may have left processes from a run with
    // the process runtime, and none may run twice.
    ProcessRuntime::end_leftovers(&log_dir);
    let process =
        || -> Arc<dyn ContainerRuntime> { Arc::new(ProcessRuntime::new(log_dir.clone())) };
    let docker = || DockerRuntime::connect().map(|d| d.for_installation(installation.to_string()));
    let runtimes = match choice {
        RuntimeChoice::Process => RuntimeSet::new(None, Some(process())),
        RuntimeChoice::Docker => {
            let docker = docker().context("connecting to Docker")?;
            anyhow::ensure!(
                docker.answers().await,
                "the Docker engine does not answer (is dockerd running, and may this user use its socket?)"
            );
            RuntimeSet::new(Some(Arc::new(docker)), None)
        }
        RuntimeChoice::Auto => match docker() {
            Ok(docker) if docker.answers().await => {
                RuntimeSet::new(Some(Arc::new(docker)), Some(process()))
            }
            _ => {
                tracing::info!("no Docker engine answers; `docker` entries cannot run here");
                RuntimeSet::new(None, Some(process()))
            }
        },
    };
    let runtimes = runtimes.with_endpoints(Arc::new(endpoints));
    tracing::info!(runtimes = runtimes.kind(), "container runtimes chosen");
    Ok((Arc::new(runtimes), outside))
}

/// How often the background work runs.
#[derive(Debug, Clone)]
pub struct BackgroundIntervals {
    /// Between full reconciliations (drift detection).
    pub reconcile: Duration,
    /// Between health checks of running servers.
    pub health: Duration,
}

impl Default for BackgroundIntervals {
    fn default() -> Self {
        Self {
            reconcile: Duration::from_secs(10),
            health: Duration::from_secs(30),
        }
    }
}

/// Starts the process manager's background tasks (run by the active worker only); they
/// end when `shutdown` turns true.
pub fn spawn_background(
    pm: Arc<Pm>,
    db: Database,
    pool: Pool,
    intervals: BackgroundIntervals,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let follow_pm = pm.clone();
    let periodic_pool = pool.clone();
    let mut stop = shutdown.clone();
    let follower = tokio::spawn(async move {
        let handle = |events: Vec<StoredEvent>| {
            let pm = follow_pm.clone();
            async move {
                let refs: Vec<EventRef> = events.iter().map(EventRef::from).collect();
                pm.handle_events(refs).await
            }
        };
        follow_until_stopped(&db, &pool, PROCESS_MANAGER, handle, &mut stop).await;
    });
    let periodic = tokio::spawn(periodic(pm, periodic_pool, intervals, shutdown));
    vec![follower, periodic]
}

/// Reconciles everything at start and every `intervals.reconcile`; checks health of
/// running servers every `intervals.health`.
async fn periodic(
    pm: Arc<Pm>,
    pool: Pool,
    intervals: BackgroundIntervals,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reconcile = tokio::time::interval(intervals.reconcile);
    let mut health = tokio::time::interval(intervals.health);
    health.tick().await;
    loop {
        tokio::select! {
            _ = reconcile.tick() => {
                match servers_in(&pool, &[
                    ServerState::Pending,
                    ServerState::Creating,
                    ServerState::Starting,
                    ServerState::Running,
                    ServerState::Stopping,
                    ServerState::Failed,
                ]).await {
                    Ok(ids) => {
                        if let Err(e) = pm.reconcile_all(ids).await {
                            tracing::warn!(error = %e, "reconciliation failed");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot list servers to reconcile"),
                }
            }
            _ = health.tick() => {
                let metadata = CommandMetadata::new(Actor::System("health-check".into()));
                match servers_in(&pool, &[ServerState::Running]).await {
                    Ok(ids) => {
                        // Each check may wait out its timeout: run several at once.
                        futures_util::stream::iter(ids)
                            .for_each_concurrent(HEALTH_CHECKS_AT_ONCE, |id| {
                                let (pm, metadata) = (&pm, &metadata);
                                async move {
                                    if let Err(e) = pm.check(id, metadata).await {
                                        tracing::debug!(server_id = %id, error = %e, "health check skipped");
                                    }
                                }
                            })
                            .await;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot list servers to check"),
                }
            }
            () = stopped(&mut shutdown) => return,
        }
    }
}

async fn servers_in(pool: &Pool, states: &[ServerState]) -> anyhow::Result<Vec<Uuid>> {
    let client = pool.get().await?;
    Ok(server_ids_in(&client, states).await?)
}
