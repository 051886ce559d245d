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
}

/// Waits for the worker lease and does the duties while it holds it, until `shutdown`.
pub fn spawn(
    duties: Duties,
    db: Database,
    pool: Pool,
    node: String,
    placement: Arc<NodePlacement>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut stop = shutdown.clone();
        loop {
            let lease = tokio::select! {
                lease = Lease::acquire(&db, WORKER_LEASE) => lease,
                () = stopped(&mut stop) => return,
            };
            let lease = match lease {
                Ok(lease) => lease,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the worker lease; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_PAUSE) => continue,
                        () = stopped(&mut stop) => return,
                    }
                }
            };
            tracing::info!(node, "this node is the active worker");
            placement.set_active(true);
            if let Err(e) = nodes::set_active(&pool, &node, true).await {
                tracing::warn!(error = %e, "cannot record this node as the active worker");
            }
            let (end_duties, duties_end) = watch::channel(false);
            let tasks = duties.start(&db, &pool, duties_end);
            let lost = tokio::select! {
                () = lease.lost() => true,
                () = stopped(&mut stop) => false,
            };
            placement.set_active(false);
            let _ = end_duties.send(true);
            for task in tasks {
                if tokio::time::timeout(DUTIES_STOP_TIMEOUT, task)
                    .await
                    .is_err()
                {
                    tracing::warn!("a worker duty did not stop in time");
                }
            }
            if !lost {
                // Berth stops: it ends what ends with it itself.
                let _ = nodes::set_active(&pool, &node, false).await;
                return;
            }
            tracing::warn!(
                node,
                "this node lost the worker lease; it stops driving the runtime and stands by"
            );
            // The node that takes over starts these again: none may run twice.
            duties.runtime.shutdown(duties.stop_grace).await;
            drop(lease);
            let _ = nodes::set_active(&pool, &node, false).await;
        }
    })
}

impl Duties {
    fn start(&self, db: &Database, pool: &Pool, end: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![bulk::spawn_bulk_driver(
            self.bulk.clone(),
            db.clone(),
            pool.clone(),
            end.clone(),
        )];
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

/// Says every [`nodes::HEARTBEAT`] that node `name` is alive, until `shutdown`.
pub fn spawn_heartbeat(
    pool: Pool,
    name: String,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut stop = shutdown;
        let mut beats = tokio::time::interval(nodes::HEARTBEAT);
        loop {
            tokio::select! {
                _ = beats.tick() => {
                    if let Err(e) = nodes::heartbeat(&pool, &name).await {
                        tracing::debug!(error = %e, "cannot record that this node is alive");
                    }
                }
                () = stopped(&mut stop) => return,
            }
        }
    })
}
