//! Driving bulk operations in the background: at start, every operation that has not
//! completed is resumed; then a feed follower (subscription `bulk-operations`, with its
//! own checkpoint) runs the driver for each `BulkOperationBegan` event.
//!
//! This runs on every `berth serve`, including replicas that do not drive the runtime
//! (`drive_runtime = false`): the driver only records commands, which the process
//! manager acts on wherever it runs. An advisory lock makes exactly one replica drive
//! bulk operations; the others wait to take over.

use std::sync::Arc;
use std::time::Duration;

use berth_application::bulk::BulkDriver;
use berth_application::AppError;
use berth_domain::bulk::{BulkEvent, BulkOperation};
use berth_infrastructure::db::Database;
use berth_infrastructure::event_store::PostgresEventRepository;
use berth_infrastructure::feed::follow::ReaderOptions;
use berth_infrastructure::feed::follower;
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

/// Held by the replica that resumes and follows bulk operations.
const DRIVER_LOCK: &str = "berth.bulk-operations.driver";

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
        let lock = tokio::select! {
            lock = berth_infrastructure::feed::lock::advisory_lock(&db, DRIVER_LOCK) => lock,
            () = stopped(&mut stop) => return,
        };
        let _lock = match lock {
            Ok(lock) => lock,
            Err(e) => {
                tracing::error!(error = %e, "cannot take the bulk driver's lock; bulk operations will not progress");
                return;
            }
        };
        // Until it succeeds: the follower alone would not hand over again an operation
        // whose `Began` it already checkpointed.
        loop {
            let resumed = tokio::select! {
                r = resume(&driver, &pool) => r,
                () = stopped(&mut stop) => return,
            };
            match resumed {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "resuming bulk operations failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_PAUSE) => {}
                        () = stopped(&mut stop) => return,
                    }
                }
            }
        }
        let handle = |events: Vec<StoredEvent>| {
            let driver = driver.clone();
            async move { drive(&driver, began_in(&events)).await }
        };
        let result = follower::follow(
            &db,
            &pool,
            BULK_OPERATIONS,
            ReaderOptions::for_followers(),
            handle,
            async move { stopped(&mut stop).await },
        )
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "the bulk driver stopped following the event feed");
        }
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

/// Completes once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here, not across an await.
    let _ = shutdown.wait_for(|s| *s).await.map(|_| ());
}
