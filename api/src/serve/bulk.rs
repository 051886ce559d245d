//! Driving bulk operations in the background: at start, every operation that has not
//! completed is resumed; then a feed follower (subscription `bulk-operations`, with its
//! own checkpoint) runs the driver for each `BulkOperationBegan` event.
//!
//! It is one of the active worker's duties ([`super::worker`]): the worker lease makes
//! exactly one node drive bulk operations, and a standby takes over from the checkpoint.
//! It runs even where the runtime is not driven (`drive_runtime = false`): the driver
//! only records commands, which the process manager acts on wherever it runs.

use std::sync::Arc;
use std::time::Duration;

use crate::serve::{follow_until_stopped, until_stopped};
use berth_application::bulk::BulkDriver;
use berth_application::AppError;
use berth_domain::bulk::{BulkEvent, BulkOperation};
use berth_infrastructure::db::Database;
use berth_infrastructure::event_store::PostgresEventRepository;
use berth_infrastructure::feed::StoredEvent;
use berth_infrastructure::stream::unfinished_streams;
use cqrs_es::Aggregate;
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The bulk driver as `berth serve` runs it.
pub type Driver = BulkDriver<PostgresEventRepository>;

/// The subscription name of the bulk driver's checkpoint and lock.
pub const BULK_OPERATIONS: &str = "bulk-operations";

/// Bulk operations driven at the same time (each with its own target concurrency).
const OPERATIONS_AT_ONCE: usize = 4;

/// The pause before resuming again after the database failed.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// One operation to drive: its id and the id of its `Began` event.
type Began = (Uuid, Option<Uuid>);

/// Starts the background task; it ends when `shutdown` turns true.
pub fn spawn_bulk_driver(
    driver: Arc<Driver>,
    db: Database,
    pool: Pool,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut stop = shutdown.clone();
        // Until it succeeds: the follower alone would not hand over again an operation
        // whose `Began` it already checkpointed.
        until_stopped("resuming bulk operations", RETRY_PAUSE, &mut stop, || {
            resume(&driver, &pool)
        })
        .await;
        let handle = |events: Vec<StoredEvent>| {
            let driver = driver.clone();
            async move { drive(&driver, began_in(&events)).await }
        };
        follow_until_stopped(&db, &pool, BULK_OPERATIONS, handle, &mut stop).await;
    })
}

/// The operations `events` begin.
fn began_in(events: &[StoredEvent]) -> Vec<Began> {
    events
        .iter()
        .filter(|e| e.aggregate_type == BulkOperation::TYPE && e.event_type == BulkEvent::BEGAN)
        .filter_map(|e| Some((e.aggregate_id.parse().ok()?, Some(e.event_id))))
        .collect()
}

/// Drives every operation that has not completed (after a crash, or one skipped
/// because it could not be driven). Fails only when the database did.
async fn resume(driver: &Driver, pool: &Pool) -> anyhow::Result<()> {
    let client = pool.get().await?;
    let unfinished = unfinished_streams(
        &client,
        BulkOperation::TYPE,
        BulkEvent::BEGAN,
        BulkEvent::COMPLETED,
    )
    .await?;
    drop(client);
    let began: Vec<Began> = unfinished
        .into_iter()
        .filter_map(|(id, event_id)| Some((id.parse().ok()?, Some(event_id))))
        .collect();
    if began.is_empty() {
        return Ok(());
    }
    tracing::info!(count = began.len(), "resuming unfinished bulk operations");
    Ok(drive(driver, began).await?)
}

/// Runs the driver for each operation, a few at once. Errors that pass (the database
/// unavailable, conflicts) fail the batch so it is handed over again; an operation that
/// cannot be driven for another reason is logged and left `running` until the next start.
async fn drive(driver: &Driver, began: Vec<Began>) -> Result<(), AppError> {
    let results: Vec<(Uuid, Result<_, AppError>)> = futures_util::stream::iter(began)
        .map(|(id, cause)| async move { (id, driver.run_bulk(id, cause).await) })
        .buffer_unordered(OPERATIONS_AT_ONCE)
        .collect()
        .await;
    let mut retry = None;
    for (id, result) in results {
        match result {
            Ok(run) => {
                tracing::debug!(bulk_id = %id, dispatched = run.dispatched, state = %run.state, "bulk operation driven");
            }
            Err(e @ (AppError::Unavailable(_) | AppError::Conflict)) => retry = Some(e),
            Err(e) => {
                tracing::error!(bulk_id = %id, error = %e, "cannot drive this bulk operation; it stays running until the next start");
            }
        }
    }
    retry.map_or(Ok(()), Err)
}
