//! A transactional consumer (the read models): each batch is applied and checkpointed in
//! one transaction, so a crash between batches neither loses nor repeats an event. It
//! catches up from where it stopped, then follows the feed ([`super::follow`]); an
//! advisory lock per subscription name makes exactly one process drive it when several
//! replicas run.

use std::future::Future;

use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use tokio::sync::watch;

use super::checkpoints::{LOAD_CHECKPOINT, SAVE_CHECKPOINT};
use super::follow::{follow, pass_after, ReaderOptions, Stop};
use super::lock::{advisory_lock, subscription_key};
use super::wake::Wakeup;
use super::{read_feed_after, Checkpoint, StoredEvent};
use crate::db::Database;
use crate::StoreError;

/// A read model (or anything else kept in the database) built from the feed.
pub trait Projector: Send + Sync {
    /// Unique, stable name: the checkpoint row's key and the advisory lock's.
    fn name(&self) -> &str;

    /// Applies `events` (in feed order) inside `tx`. The runner saves the checkpoint in
    /// the same transaction and commits; an error rolls the whole batch back.
    fn apply(
        &self,
        tx: &Transaction<'_>,
        events: &[StoredEvent],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Drives one projector.
pub struct ProjectorRunner<S> {
    db: Database,
    pool: Pool,
    subscriber: S,
    options: ReaderOptions,
    progress: watch::Sender<Checkpoint>,
}

impl<S: Projector> ProjectorRunner<S> {
    /// A runner for `subscriber` reading through `pool`.
    pub fn new(db: Database, pool: Pool, subscriber: S, options: ReaderOptions) -> Self {
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

    /// The projector being driven.
    pub fn projector(&self) -> &S {
        &self.subscriber
    }

    /// Takes the subscription's advisory lock (waiting while another process holds it),
    /// then catches up and follows the feed until `shutdown` completes. An error ends
    /// the run; its supervisor starts it again.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), StoreError> {
        tokio::pin!(shutdown);
        let name = self.subscriber.name();
        let key = subscription_key(name);
        let lock = tokio::select! {
            lock = advisory_lock(&self.db, &key) => lock?,
            () = &mut shutdown => return Ok(()),
        };
        tracing::info!(subscription = name, "subscription started");
        let wakeup = Wakeup::listen(&self.db, self.options.poll_interval).await?;
        let pass = || async {
            let (_, applied) = self.apply_batch().await?;
            Ok(pass_after(applied, self.options.batch_size))
        };
        let outcome = follow(wakeup, Stop::BetweenPasses, shutdown, pass).await;
        drop(lock);
        outcome
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
        let events = read_feed_after(&tx, start, self.options.batch_size).await?;
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
}
