//! A consumer with side effects outside the database (the process manager, the bulk
//! driver): a batch is read, handed to an async handler that may take its time (no
//! transaction is held open meanwhile, so no other consumer waits behind it), and only
//! then is the checkpoint saved. A crash before the save hands the same events over
//! again, so the handler must be idempotent. Its subscription's advisory lock makes one
//! process the follower.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::Pool;

use super::checkpoints::{checkpoint_of, save_checkpoint};
use super::follow::{follow as follow_feed, pass_after, Pass, ReaderOptions, Stop};
use super::lock::{advisory_lock, subscription_key};
use super::wake::Wakeup;
use super::{read_feed_after, StoredEvent};
use crate::db::Database;
use crate::StoreError;

/// The pause before a batch whose handling failed is handed over again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Follows the feed for subscription `name`, calling `handle` for each batch, until
/// `shutdown` completes. Handler and read errors are logged and retried after a pause:
/// nothing a follower meets ends it.
pub async fn follow<H, F, E>(
    db: &Database,
    pool: &Pool,
    name: &str,
    options: ReaderOptions,
    handle: H,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StoreError>
where
    H: Fn(Vec<StoredEvent>) -> F,
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(shutdown);
    let key = subscription_key(name);
    let lock = tokio::select! {
        lock = advisory_lock(db, &key) => lock?,
        () = &mut shutdown => return Ok(()),
    };
    tracing::info!(subscription = name, "follower started");
    let wakeup = Wakeup::listen(db, options.poll_interval).await?;
    let pass = || async {
        match one_batch(pool, name, options.batch_size, &handle).await {
            Ok(pass) => Ok(pass),
            Err(e) => {
                tracing::warn!(subscription = name, error = %e, "following the feed failed; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
                Ok(Pass::More)
            }
        }
    };
    let outcome = follow_feed(wakeup, Stop::Anytime, shutdown, pass).await;
    drop(lock);
    outcome
}

/// Reads, handles and checkpoints one batch.
async fn one_batch<H, F, E>(
    pool: &Pool,
    name: &str,
    batch_size: i64,
    handle: &H,
) -> Result<Pass, String>
where
    H: Fn(Vec<StoredEvent>) -> F,
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let at = checkpoint_of(&client, name)
        .await
        .map_err(|e| e.to_string())?;
    let events = read_feed_after(&client, at, batch_size)
        .await
        .map_err(|e| e.to_string())?;
    drop(client);
    let read = events.len();
    let Some(last) = events.last().map(StoredEvent::checkpoint) else {
        return Ok(Pass::CaughtUp);
    };
    handle(events).await.map_err(|e| e.to_string())?;
    let client = pool.get().await.map_err(|e| e.to_string())?;
    save_checkpoint(&client, name, last)
        .await
        .map_err(|e| e.to_string())?;
    Ok(pass_after(read, batch_size))
}
