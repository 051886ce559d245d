//! The worker's duties, done by one node at a time: driving the runtime (the process
//! manager's feed follower, reconciliation and health checks) and driving bulk
//! operations. Every node with the worker role waits for the worker lease; the one that
//! holds it does the duties, and the others stand by. When the active node dies, the
//! database frees the lease and a standby takes over from the checkpoints; when it loses
//! the lease while alive (its connection failed), it stops the duties and ends what must
//! not outlive it, since the node taking over starts those again.

use std::sync::Arc;
use std::time::Duration;

use berth_application::runtime::ContainerRuntime;
use berth_infrastructure::db::Database;
use berth_infrastructure::feed::lock::Lease;
use berth_infrastructure::nodes;
use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::gateway::stored_sessions::StoredSessions;
use berth_infrastructure::mcp::McpSessionPool;

use crate::http::state::Pm;
use crate::node::placement::NodePlacement;
use crate::serve::bulk;
use crate::serve::runtimes::{self, BackgroundIntervals};
use crate::serve::stopped;

/// The advisory lock held by the active worker.
pub const WORKER_LEASE: &str = "berth.worker";

/// The pause before trying the lease again after the database failed.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// How long the duties get to finish their step when the lease ends.
const DUTIES_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the active worker does.
pub struct Duties {
    /// Drives the runtime; `None` when this node records commands only (tests).
    pub pm: Option<Arc<Pm>>,
    /// The runtime the process manager drives.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// How long a server gets to stop when the lease is lost.
    pub stop_grace: Duration,
    /// How often reconciliation and health checks run.
    pub intervals: BackgroundIntervals,
    /// Drives bulk operations.
    pub bulk: Arc<bulk::Driver>,
    /// The gateway sessions every node may take up, old ones forgotten now and then.
    pub gateway_sessions: StoredSessions,
    /// This node's MCP sessions with the servers, closed when the active worker changes.
    pub mcp: Arc<McpSessionPool>,
    /// Where servers run, as this node tells the others (and itself).
    pub placement: Arc<NodePlacement>,
}

/// Waits for the worker lease (starting with `first`, when this node took it at start)
/// and does the duties while it holds it, until `shutdown`.
pub fn spawn(
    duties: Duties,
    db: Database,
    pool: Pool,
    node: String,
    first: Option<Lease>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut stop = shutdown.clone();
        let mut held = first;
        // Whether the lease in `held` was taken again after a failed connection, this
        // node's sessions and servers untouched.
        let mut regained = false;
        loop {
            let lease = match held.take() {
                Some(lease) => lease,
                None => {
                    let lease = tokio::select! {
                        lease = Lease::acquire(&db, WORKER_LEASE) => lease,
                        () = stopped(&mut stop) => return,
                    };
                    match lease {
                        Ok(lease) => lease,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot take the worker lease; trying again");
                            tokio::select! {
                                () = tokio::time::sleep(RETRY_PAUSE) => continue,
                                () = stopped(&mut stop) => return,
                            }
                        }
                    }
                }
            };
            tracing::info!(node, "this node is the active worker");
            duties.placement.set_active(true);
            if !std::mem::take(&mut regained) {
                // Sessions opened while another node was active went through it; this
                // node's own (a stdio server's only client) are kept across a regain.
                duties.mcp.close_all().await;
            }
            if let Err(e) = nodes::set_active(&pool, &node, true).await {
                tracing::warn!(error = %e, "cannot record this node as the active worker");
            }
            let (end_duties, duties_end) = watch::channel(false);
            let tasks = duties.start(&db, &pool, duties_end);
            let lost = tokio::select! {
                () = lease.lost() => true,
                () = stopped(&mut stop) => false,
            };
            let _ = end_duties.send(true);
            if !lost {
                // Berth stops: the duties finish their step; Berth ends what ends with it.
                finish(tasks, DUTIES_STOP_TIMEOUT).await;
                duties.placement.set_active(false);
                let _ = nodes::set_active(&pool, &node, false).await;
                return;
            }
            // Another node may hold the lease within a second: stop at once, mid-step
            // (every step is repeated safely by whoever drives next), and answer for the
            // servers no more until the lease is this node's again.
            duties.placement.set_active(false);
            finish(tasks, Duration::ZERO).await;
            let former = lease.backend();
            drop(lease);
            if let Some(again) = regain(&db, former).await {
                tracing::info!(
                    node,
                    "the worker lease's connection failed; this node took the lease again"
                );
                held = Some(again);
                regained = true;
                continue;
            }
            tracing::warn!(
                node,
                "this node lost the worker lease; it stops driving the runtime and stands by"
            );
            let _ = nodes::set_active(&pool, &node, false).await;
            // The node that takes over opens its own sessions and starts these again: no
            // server may have two clients, or run twice.
            duties.mcp.close_all().await;
            duties.runtime.shutdown(duties.stop_grace).await;
        }
    })
}

/// Waits for the duties to finish, at most `grace`, then aborts those still running.
async fn finish(tasks: Vec<JoinHandle<()>>, grace: Duration) {
    for task in tasks {
        let abort = task.abort_handle();
        if tokio::time::timeout(grace, task).await.is_err() {
            abort.abort();
        }
    }
}

/// The lease again, when nobody else took it after this node's connection failed (a
/// database restart, a network blip): tried for [`REGAIN_WINDOW`], so that a blip does
/// not end every server this node runs. `None` when another node holds it, or the
/// database did not answer in time.
async fn regain(db: &Database, former: i32) -> Option<Lease> {
    let deadline = tokio::time::Instant::now() + REGAIN_WINDOW;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, Lease::try_acquire(db, WORKER_LEASE, Some(former))).await {
            Ok(Ok(taken)) => return taken,
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot try the worker lease again yet"),
            Err(_) => return None,
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(RETRY_PAUSE / 2).await;
    }
}

/// How long a node whose lease connection failed tries to take the lease again before
/// it gives up what it runs.
const REGAIN_WINDOW: Duration = Duration::from_secs(5);

impl Duties {
    fn start(&self, db: &Database, pool: &Pool, end: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![
            bulk::spawn_bulk_driver(self.bulk.clone(), db.clone(), pool.clone(), end.clone()),
            spawn_forgetting(self.gateway_sessions.clone(), pool.clone(), end.clone()),
        ];
        if let Some(pm) = &self.pm {
            tasks.extend(runtimes::spawn_background(
                pm.clone(),
                db.clone(),
                pool.clone(),
                self.intervals.clone(),
                end,
            ));
        }
        tasks
    }
}

/// Forgets the gateway sessions kept too long and the nodes long gone, at start and
/// every [`FORGET_EVERY`].
fn spawn_forgetting(
    sessions: StoredSessions,
    pool: Pool,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut stop = shutdown;
        let mut rounds = tokio::time::interval(FORGET_EVERY);
        loop {
            tokio::select! {
                _ = rounds.tick() => {
                    match sessions.forget_old().await {
                        Ok(0) => {}
                        Ok(forgotten) => tracing::info!(forgotten, "old gateway sessions forgotten"),
                        Err(e) => tracing::debug!(error = %e, "cannot forget old gateway sessions"),
                    }
                    match nodes::forget_gone(&pool).await {
                        Ok(0) => {}
                        Ok(forgotten) => tracing::info!(forgotten, "nodes gone for a day forgotten"),
                        Err(e) => tracing::debug!(error = %e, "cannot forget nodes gone for a day"),
                    }
                }
                () = stopped(&mut stop) => return,
            }
        }
    })
}

/// How often old gateway sessions and nodes are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(3600);

/// Says every [`nodes::HEARTBEAT`] that node `name` is alive, until `shutdown`.
pub fn spawn_heartbeat(
    db: Database,
    name: String,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut stop = shutdown;
        let mut beats = tokio::time::interval(nodes::HEARTBEAT);
        beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A connection of its own, opened again when it fails: the shared pool may be
        // busy with requests while this node is perfectly alive.
        let mut connection: Option<deadpool_postgres::tokio_postgres::Client> = None;
        loop {
            tokio::select! {
                _ = beats.tick() => {
                    if connection
                        .as_ref()
                        .is_none_or(deadpool_postgres::tokio_postgres::Client::is_closed)
                    {
                        connection = db.connect().await.inspect_err(|e| {
                            tracing::debug!(error = %e, "cannot connect to record that this node is alive");
                        }).ok();
                    }
                    if let Some(client) = &connection {
                        let beat = tokio::time::timeout(nodes::HEARTBEAT, nodes::heartbeat(client, &name)).await;
                        if !matches!(beat, Ok(Ok(()))) {
                            tracing::debug!("cannot record that this node is alive");
                            connection = None;
                        }
                    }
                }
                () = stopped(&mut stop) => return,
            }
        }
    })
}
