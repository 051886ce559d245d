//! Following the feed with side effects outside the database (the process manager):
//! a batch is read, handed to an async handler that may take its time (no transaction is
//! held open meanwhile, so no other subscriber waits behind it), and only then is the
//! checkpoint saved. A crash before the save hands the same events over again, so the
//! handler must be idempotent. An advisory lock makes one process the follower.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::Pool;

use crate::db::Database;
use crate::feed::{self, Checkpoint, FeedFilter, StoredEvent};
use crate::notify::EventNotifier;
use crate::subscription::checkpoint_of;
use crate::StoreError;

/// Follows the feed for subscription `name`, calling `handle` for each batch, until
/// `shutdown` completes. Handler errors are logged and the batch is retried after a
/// pause.
pub async fn follow<H, F, E>(
    db: &Database,
    pool: &Pool,
    name: &str,
    batch_size: i64,
    poll_interval: Duration,
    handle: H,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StoreError>
where
    H: Fn(Vec<StoredEvent>) -> F,
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(shutdown);
    let key = format!("berth.subscription.{name}");
    let lock = tokio::select! {
        lock = advisory_lock(db, &key) => lock?,
        () = &mut shutdown => return Ok(()),
    };
    tracing::info!(subscription = name, "follower started");
    let notifier = EventNotifier::listen(db).await?;
    loop {
        let work = async {
            let client = pool.get().await?;
            let at = checkpoint_of(&client, name).await?;
            let events = feed::read_after(&client, at, batch_size, &FeedFilter::default()).await?;
            drop(client);
            let Some(last) = events.last().map(StoredEvent::checkpoint) else {
                return Ok::<bool, StoreError>(false);
            };
            if let Err(e) = handle(events).await {
                tracing::warn!(subscription = name, error = %e, "handling a batch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return Ok(true);
            }
            save(pool, name, last).await?;
            Ok(true)
        };
        let more = tokio::select! {
            r = work => r,
            () = &mut shutdown => break,
        };
        match more {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(subscription = name, error = %e, "reading the feed failed");
            }
        }
        tokio::select! {
            _ = notifier.wait(poll_interval) => {}
            () = &mut shutdown => break,
        }
    }
    drop(lock);
    Ok(())
}

async fn save(pool: &Pool, name: &str, at: Checkpoint) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO subscription_checkpoints (name, transaction_id, global_position) \
             VALUES ($1, $2::text::xid8, $3) ON CONFLICT (name) DO UPDATE \
             SET transaction_id = excluded.transaction_id, \
                 global_position = excluded.global_position, updated_at = now()",
            &[&name, &at.transaction_id.to_string(), &at.position],
        )
        .await?;
    Ok(())
}

/// Takes the session-level advisory lock `key` on a dedicated connection, waiting while
/// another process holds it. The lock lasts as long as the returned client.
pub async fn advisory_lock(db: &Database, key: &str) -> Result<tokio_postgres::Client, StoreError> {
    let client = db.connect().await?;
    client
        .execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &[&key])
        .await?;
    Ok(client)
}
