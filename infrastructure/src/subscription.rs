//! Durable subscriptions: a subscriber with its own checkpoint follows the feed, catching
//! up from where it stopped and then living on notifications, with a slow poll as the
//! fallback. Each batch is applied and checkpointed in one transaction, so a crash
//! between batches neither loses nor repeats an event. An advisory lock per subscription
//! name makes exactly one process drive it when several replicas run.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use tokio::sync::watch;

use crate::db::Database;
use crate::feed::{self, Checkpoint, StoredEvent};
use crate::notify::EventNotifier;
use crate::StoreError;

/// Something that consumes the event feed durably.
pub trait Subscriber: Send + Sync {
    /// Unique, stable name: the checkpoint row's key and the advisory lock's.
    fn name(&self) -> &str;

    /// Applies `events` (in feed order) inside `tx`. The runner saves the checkpoint in
    /// the same transaction and commits; an error rolls the whole batch back.
    fn apply(
        &self,
        tx: &Transaction<'_>,
        events: &[StoredEvent],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Clears everything the subscriber built, inside `tx` (used by rebuilds). The
    /// runner resets the checkpoint in the same transaction.
    fn reset(&self, tx: &Transaction<'_>) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// How a runner behaves.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Events per transaction.
    pub batch_size: i64,
    /// How long to wait for a notification before looking anyway.
    pub poll_interval: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Drives one subscriber.
pub struct SubscriptionRunner<S> {
    db: Database,
    pool: Pool,
    subscriber: S,
    options: RunnerOptions,
    progress: watch::Sender<Checkpoint>,
}

/// Loads subscription `$1`'s checkpoint, creating it at the start, and locks its row
/// until the transaction ends (a batch and a rebuild's swap hold it).
pub const LOAD_CHECKPOINT: &str = "INSERT INTO subscription_checkpoints (name) VALUES ($1) \
     ON CONFLICT (name) DO UPDATE SET name = excluded.name \
     RETURNING transaction_id::text, global_position";
/// Sets subscription `$1`'s checkpoint to transaction `$2` (text), position `$3`.
pub const SAVE_CHECKPOINT: &str = "UPDATE subscription_checkpoints \
     SET transaction_id = $2::text::xid8, global_position = $3, updated_at = now() WHERE name = $1";

fn lock_key(name: &str) -> String {
    format!("berth.subscription.{name}")
}

impl<S: Subscriber> SubscriptionRunner<S> {
    /// A runner for `subscriber` reading through `pool`.
    pub fn new(db: Database, pool: Pool, subscriber: S, options: RunnerOptions) -> Self {
        let (progress, _) = watch::channel(Checkpoint::START);
        Self {
            db,
            pool,
            subscriber,
            options,
            progress,
        }
    }

    /// Follows the checkpoint as batches commit.
    pub fn progress(&self) -> watch::Receiver<Checkpoint> {
        self.progress.subscribe()
    }

    /// The subscriber being driven.
    pub fn subscriber(&self) -> &S {
        &self.subscriber
    }

    /// Takes the subscription's advisory lock (waiting while another process holds it),
    /// then catches up and follows the feed until `shutdown` completes.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), StoreError> {
        tokio::pin!(shutdown);
        let lock = self.db.connect().await?;
        let key = lock_key(self.subscriber.name());
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&key];
        let acquire = lock.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &params);
        tokio::select! {
            r = acquire => { r?; }
            () = &mut shutdown => return Ok(()),
        }
        tracing::info!(
            subscription = self.subscriber.name(),
            "subscription started"
        );
        let notifier = EventNotifier::listen(&self.db).await?;
        loop {
            self.catch_up().await?;
            tokio::select! {
                _ = notifier.wait(self.options.poll_interval) => {}
                () = &mut shutdown => break,
            }
        }
        drop(lock);
        Ok(())
    }

    /// Applies batches until the feed has nothing more to give; returns the checkpoint.
    pub async fn catch_up(&self) -> Result<Checkpoint, StoreError> {
        loop {
            let (checkpoint, applied) = self.apply_batch().await?;
            if applied == 0 {
                return Ok(checkpoint);
            }
        }
    }

    /// Applies one batch in one transaction; returns the checkpoint and how many events
    /// it held.
    pub async fn apply_batch(&self) -> Result<(Checkpoint, usize), StoreError> {
        let name = self.subscriber.name();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let load = tx.prepare_cached(LOAD_CHECKPOINT).await?;
        let start = Checkpoint::from_row(&tx.query_one(&load, &[&name]).await?)?;
        let events = feed::read_feed_after(&tx, start, self.options.batch_size).await?;
        if events.is_empty() {
            tx.rollback().await?;
            self.progress.send_replace(start);
            return Ok((start, 0));
        }
        let last = self.apply_in(&tx, &events).await?;
        tx.commit().await?;
        self.progress.send_replace(last);
        Ok((last, events.len()))
    }

    /// Applies `events`, which the caller read from the feed right after `from` (reading
    /// ahead while the previous batch was applied), in one transaction; returns the new
    /// checkpoint. Fails, applying nothing, unless the subscription stands at `from`.
    pub async fn apply_read(
        &self,
        from: Checkpoint,
        events: &[StoredEvent],
    ) -> Result<Checkpoint, StoreError> {
        let name = self.subscriber.name();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let load = tx.prepare_cached(LOAD_CHECKPOINT).await?;
        let start = Checkpoint::from_row(&tx.query_one(&load, &[&name]).await?)?;
        if start != from {
            return Err(StoreError::Malformed(format!(
                "subscription {name} stands at {start:?}, not at {from:?} where its events \
                 were read from"
            )));
        }
        if events.is_empty() {
            return Ok(start);
        }
        let last = self.apply_in(&tx, events).await?;
        tx.commit().await?;
        self.progress.send_replace(last);
        Ok(last)
    }

    /// Applies non-empty `events` and saves the checkpoint after them, inside `tx`.
    async fn apply_in(
        &self,
        tx: &Transaction<'_>,
        events: &[StoredEvent],
    ) -> Result<Checkpoint, StoreError> {
        let last = events
            .last()
            .map_or(Checkpoint::START, StoredEvent::checkpoint);
        self.subscriber.apply(tx, events).await?;
        let save = tx.prepare_cached(SAVE_CHECKPOINT).await?;
        tx.execute(
            &save,
            &[
                &self.subscriber.name(),
                &last.transaction_id.to_string(),
                &last.position,
            ],
        )
        .await?;
        Ok(last)
    }

    /// Clears the subscriber's read model and its checkpoint in one transaction, so the
    /// next catch-up rebuilds it from the first event.
    pub async fn reset(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        self.subscriber.reset(&tx).await?;
        tx.execute(
            "DELETE FROM subscription_checkpoints WHERE name = $1",
            &[&self.subscriber.name()],
        )
        .await?;
        tx.commit().await?;
        self.progress.send_replace(Checkpoint::START);
        Ok(())
    }
}

/// The stored checkpoint of subscription `name` (start if it never ran).
pub async fn checkpoint_of<C: deadpool_postgres::GenericClient>(
    client: &C,
    name: &str,
) -> Result<Checkpoint, StoreError> {
    let row = client
        .query_opt(
            "SELECT transaction_id::text, global_position FROM subscription_checkpoints WHERE name = $1",
            &[&name],
        )
        .await?;
    row.as_ref()
        .map_or(Ok(Checkpoint::START), Checkpoint::from_row)
}
