//! Blue-green rebuilds: a projection is built again from the first event into copies of
//! its tables in a schema of their own (`berth_rebuild_<name>`) while the live tables
//! keep answering queries and the live runner keeps them current. Once the copy has
//! caught up, one short transaction applies the few events the live runner got further,
//! swaps the copies into `public` and moves the live checkpoint to where the copy is.
//!
//! The copy is written by the projection's own projector through a connection whose
//! `search_path` starts with the rebuild schema, so the projector's SQL needs no change;
//! it follows the feed under its own checkpoint (`<name>@rebuild`) in large batches,
//! each one multi-row statement per table as in normal running. Because no one reads
//! the copy before the swap, it is built the way bulk loads are:
//!
//! - the next batch is read on a second connection while the last one is applied;
//! - the copy's commits do not wait for the disk (the swap's commit, which makes it
//!   live, does, and with it everything before);
//! - its non-unique indexes, and every constraint of the tables a projector only appends
//!   to (`Rebuildable::APPEND_ONLY`), are built once it is full, two at a time;
//! - work that only the final state needs is done once, at the end
//!   (`Rebuildable::settle`);
//! - its statements are planned for each batch, as its tables grow from nothing, and the
//!   tables are analysed before the swap, so the planner knows them from the first query.
//!
//! Readers never see a half-built model: the swap renames tables under an exclusive lock
//! held only for the swap itself; statements prepared against the old tables are planned
//! again by PostgreSQL against the new ones.

use std::future::Future;
use std::time::{Duration, Instant};

use berth_infrastructure::db::Database;
use berth_infrastructure::feed::checkpoints::{checkpoint_of, save_checkpoint, LOAD_CHECKPOINT};
use berth_infrastructure::feed::follow::ReaderOptions;
use berth_infrastructure::feed::projector::{Projector, ProjectorRunner};
use berth_infrastructure::feed::{self, Checkpoint, StoredEvent};
use berth_infrastructure::StoreError;
use deadpool_postgres::{GenericClient, Pool, Transaction};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::shadow_tables::{clone_table, ident, Deferred};

/// Suffix of the checkpoint a rebuild's copy follows the feed under.
pub const REBUILD_SUFFIX: &str = "@rebuild";

/// How long the swap waits for a table lock before trying again.
const SWAP_LOCK_TIMEOUT: &str = "5s";
/// How many times the swap is tried before the rebuild gives up (leaving the live
/// projection as it was).
const SWAP_ATTEMPTS: u32 = 5;

/// How a rebuild runs.
#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// Events per transaction while building the copy.
    pub batch_size: i64,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self { batch_size: 5_000 }
    }
}

/// What a finished rebuild did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RebuildReport {
    /// The projection.
    pub name: String,
    /// Events applied to the copy (while building and at the swap).
    pub events: u64,
    /// Of those, the events applied inside the swap: what the live runner had got
    /// further than the copy.
    pub events_at_swap: u64,
    /// Global position the projection stands at after the swap.
    pub position: i64,
    /// From the start of the build to the end of the swap.
    pub elapsed: Duration,
    /// How long the swap transaction held the live checkpoint (the live runner waits
    /// that long; readers wait at most for the table renames within it).
    pub swap: Duration,
}

impl RebuildReport {
    /// Events per second over the whole rebuild.
    pub fn events_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.events as f64 / seconds
        } else {
            0.0
        }
    }
}

/// The schema a projection's copy is built in.
pub fn rebuild_schema(name: &str) -> String {
    format!("berth_rebuild_{name}")
}

/// The schema the replaced tables are moved to until they are dropped.
fn retired_schema(name: &str) -> String {
    format!("berth_retired_{name}")
}

/// The checkpoint name of a projection's copy.
pub fn rebuild_checkpoint(name: &str) -> String {
    format!("{name}{REBUILD_SUFFIX}")
}

/// A projector that can be rebuilt blue-green (each projection's implements it).
pub(crate) trait Rebuildable: Projector + Default + 'static {
    /// Tables the projector only appends to, relying on none of their constraints or
    /// unique indexes (no upsert, no lookup): the copy gets those once it is filled.
    const APPEND_ONLY: &'static [&'static str] = &[];

    /// A projector for building a copy that no one reads until it is swapped in: it may
    /// leave work that only the final state needs to [`Rebuildable::settle`].
    fn for_copy() -> Self {
        Self::default()
    }

    /// Does, inside `tx`, the work a [`Rebuildable::for_copy`] projector left.
    fn settle(&self, tx: &Transaction<'_>) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = tx;
        std::future::ready(Ok(()))
    }
}

/// A projector writing under another checkpoint name.
struct Renamed<S> {
    inner: S,
    name: String,
}

impl<S: Projector> Projector for Renamed<S> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn apply(&self, tx: &Transaction<'_>, events: &[StoredEvent]) -> Result<(), StoreError> {
        self.inner.apply(tx, events).await
    }
}

const FORGET_CHECKPOINT: &str = "DELETE FROM subscription_checkpoints WHERE name = $1";

/// Rebuilds projection `name` (owning `tables`, written by a fresh `S`) blue-green,
/// awaiting `before_swap` once the copy has caught up. Waits while another rebuild of
/// the same projection runs anywhere.
pub(crate) async fn rebuild<S: Rebuildable>(
    db: &Database,
    pool: &Pool,
    name: &str,
    tables: &[&str],
    options: &RebuildOptions,
    before_swap: impl Future<Output = ()>,
) -> Result<RebuildReport, StoreError> {
    let lock = db.connect().await?;
    let key = format!("berth.rebuild.{name}");
    lock.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &[&key])
        .await?;
    let started = Instant::now();
    let result = build_and_swap::<S>(db, pool, name, tables, options, started, before_swap).await;
    // Whatever happened, leave no copy behind: a failed rebuild leaves the live
    // projection exactly as it was.
    let cleanup = discard_copy(pool, name).await;
    drop(lock);
    let report = result?;
    cleanup?;
    Ok(report)
}

async fn build_and_swap<S: Rebuildable>(
    db: &Database,
    pool: &Pool,
    name: &str,
    tables: &[&str],
    options: &RebuildOptions,
    started: Instant,
    before_swap: impl Future<Output = ()>,
) -> Result<RebuildReport, StoreError> {
    discard_copy(pool, name).await?;
    let deferred = prepare_copy(pool, name, tables, S::APPEND_ONLY).await?;

    let mut config = db.config().clone();
    // Keep whatever options the database URL carries; the copy's schema comes first.
    // Its batches need not wait for the disk: a crash discards an unfinished copy, and
    // the swap's own commit, which waits, makes every earlier one durable with it.
    // Its statements are planned for each batch: the copy's tables grow from nothing,
    // and a plan cached while they were small (a hash join over a whole table to update
    // a few hundred rows) would otherwise stay for the whole build.
    let copy_options = format!(
        "-c search_path={},public -c synchronous_commit=off \
         -c plan_cache_mode=force_custom_plan",
        rebuild_schema(name)
    );
    let connection_options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} {copy_options}"),
        _ => copy_options,
    };
    config.options(connection_options);
    let copy_db = Database::from_config(config);
    // One connection applies batches, the other reads the next one meanwhile.
    let copy_pool = copy_db.pool(2)?;
    let runner = ProjectorRunner::new(
        copy_db,
        copy_pool.clone(),
        Renamed {
            inner: S::for_copy(),
            name: rebuild_checkpoint(name),
        },
        ReaderOptions {
            batch_size: options.batch_size,
            ..ReaderOptions::default()
        },
    );
    let built = async {
        let events = build(&runner, &copy_pool, options.batch_size).await?;
        finish_copy(&runner, &copy_pool, name, tables, &deferred).await?;
        Ok::<_, StoreError>(events)
    }
    .await;
    let events = match built {
        Ok(events) => events,
        Err(e) => {
            copy_pool.close();
            return Err(e);
        }
    };
    before_swap.await;

    let mut attempt = 1;
    loop {
        match swap::<S>(&copy_pool, name, tables, options).await {
            Ok((applied, position, swap)) => {
                copy_pool.close();
                return Ok(RebuildReport {
                    name: name.to_string(),
                    events: events + applied,
                    events_at_swap: applied,
                    position,
                    elapsed: started.elapsed(),
                    swap,
                });
            }
            Err(e) if attempt < SWAP_ATTEMPTS && is_lock_timeout(&e) => {
                tracing::warn!(
                    projection = name,
                    attempt,
                    "rebuild swap waited too long for a lock; trying again"
                );
                attempt += 1;
                // Catch the copy up again so the next swap has little to apply.
                let caught_up = async {
                    while runner.apply_batch().await?.1 > 0 {}
                    settle(&runner, &copy_pool).await
                }
                .await;
                if let Err(e) = caught_up {
                    copy_pool.close();
                    return Err(e);
                }
            }
            Err(e) => {
                copy_pool.close();
                return Err(e);
            }
        }
    }
}

/// Fills the copy from its checkpoint to the end of the feed, reading each batch on one
/// connection of `copy_pool` while the one before is applied on the other; returns the
/// events applied.
async fn build<S: Projector>(
    runner: &ProjectorRunner<S>,
    copy_pool: &Pool,
    batch_size: i64,
) -> Result<u64, StoreError> {
    let from = checkpoint_of(&copy_pool.get().await?, runner.projector().name()).await?;
    // One batch waits while the next is read: little memory, and neither side idles.
    let (batches, mut receiver) = mpsc::channel(1);
    let reader = tokio::spawn(read_ahead(copy_pool.clone(), from, batch_size, batches));
    let mut at = from;
    let mut events = 0_u64;
    let applied = async {
        while let Some(batch) = receiver.recv().await {
            let batch: Vec<StoredEvent> = batch?;
            at = runner.apply_read(at, &batch).await?;
            events += batch.len() as u64;
        }
        // Whatever was committed after the reader's last look.
        loop {
            let (_, applied) = runner.apply_batch().await?;
            if applied == 0 {
                return Ok::<_, StoreError>(events);
            }
            events += applied as u64;
        }
    }
    .await;
    // On failure the reader stops at its next send; it holds a connection until then.
    drop(receiver);
    let _ = reader.await;
    applied
}

/// Reads the feed after `from`, batch after batch, into `batches` until it has nothing
/// more (or the receiver is gone).
async fn read_ahead(
    copy_pool: Pool,
    mut from: Checkpoint,
    batch_size: i64,
    batches: mpsc::Sender<Result<Vec<StoredEvent>, StoreError>>,
) {
    let client = match copy_pool.get().await {
        Ok(client) => client,
        Err(e) => {
            let _ = batches.send(Err(e.into())).await;
            return;
        }
    };
    loop {
        let batch = feed::read_feed_after(&client, from, batch_size).await;
        match batch {
            Ok(batch) if batch.is_empty() => return,
            Ok(batch) => {
                from = batch.last().map_or(from, StoredEvent::checkpoint);
                if batches.send(Ok(batch)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = batches.send(Err(e)).await;
                return;
            }
        }
    }
}

/// Makes the filled copy ready to swap in: its `deferred` constraints and indexes, the
/// projector's deferred work, and fresh planner statistics.
async fn finish_copy<S: Rebuildable>(
    runner: &ProjectorRunner<Renamed<S>>,
    copy_pool: &Pool,
    name: &str,
    tables: &[&str],
    deferred: &Deferred,
) -> Result<(), StoreError> {
    let (first, second) = (copy_pool.get().await?, copy_pool.get().await?);
    for constraint in &deferred.constraints {
        first.batch_execute(constraint).await?;
    }
    // Two index builds at a time: each sorts in parallel, but writes its index alone.
    let queue = std::sync::Mutex::new(deferred.indexes.iter());
    let build = |client: deadpool_postgres::Object| {
        let queue = &queue;
        async move {
            loop {
                let next = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .next();
                match next {
                    Some(index) => client.batch_execute(index).await?,
                    None => return Ok::<_, StoreError>(()),
                }
            }
        }
    };
    tokio::try_join!(build(first), build(second))?;
    settle(runner, copy_pool).await?;
    let schema = ident(&rebuild_schema(name));
    let analyse = tables
        .iter()
        .map(|table| format!("{schema}.{}", ident(table)))
        .collect::<Vec<_>>()
        .join(", ");
    // This commit waits for the disk, and with it everything the copy wrote before: the
    // swap's own commit then has only the swap to wait for.
    copy_pool
        .get()
        .await?
        .batch_execute(&format!(
            "BEGIN; SET LOCAL synchronous_commit = on; ANALYZE {analyse}; COMMIT"
        ))
        .await?;
    Ok(())
}

/// Runs the copy projector's deferred work in a transaction of its own.
async fn settle<S: Rebuildable>(
    runner: &ProjectorRunner<Renamed<S>>,
    copy_pool: &Pool,
) -> Result<(), StoreError> {
    let mut client = copy_pool.get().await?;
    let tx = client.transaction().await?;
    runner.projector().inner.settle(&tx).await?;
    tx.commit().await?;
    Ok(())
}

fn is_lock_timeout(error: &StoreError) -> bool {
    match error {
        StoreError::Database(e) => {
            e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
        }
        _ => false,
    }
}

/// Creates the copy's schema with empty tables shaped like the live ones; returns the
/// statements adding their non-unique indexes (and all the constraints and indexes of
/// the `append_only` ones), for once they are filled.
async fn prepare_copy(
    pool: &Pool,
    name: &str,
    tables: &[&str],
    append_only: &[&str],
) -> Result<Deferred, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("CREATE SCHEMA {}", ident(&rebuild_schema(name))))
        .await?;
    let mut deferred = Deferred::default();
    for table in tables {
        let appended = append_only.contains(table);
        deferred.extend(clone_table(&tx, &rebuild_schema(name), table, appended).await?);
    }
    tx.execute(FORGET_CHECKPOINT, &[&rebuild_checkpoint(name)])
        .await?;
    tx.commit().await?;
    Ok(deferred)
}

/// Drops a copy (and retired tables) left by this or an interrupted rebuild.
async fn discard_copy(pool: &Pool, name: &str) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE; DROP SCHEMA IF EXISTS {} CASCADE",
            ident(&rebuild_schema(name)),
            ident(&retired_schema(name))
        ))
        .await?;
    client
        .execute(FORGET_CHECKPOINT, &[&rebuild_checkpoint(name)])
        .await?;
    Ok(())
}

/// In one transaction on the copy's connection: holds the live checkpoint (so the live
/// runner pauses), brings the copy to where the live projection is, swaps the tables and
/// moves the live checkpoint. Returns the events applied, the final position and how
/// long the live checkpoint was held.
async fn swap<S: Rebuildable>(
    copy_pool: &Pool,
    name: &str,
    tables: &[&str],
    options: &RebuildOptions,
) -> Result<(u64, i64, Duration), StoreError> {
    let mut client = copy_pool.get().await?;
    let tx = client.transaction().await?;
    // The copy's connections commit without waiting for the disk; this commit makes the
    // copy live, so it waits, and with it everything written before.
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'; SET LOCAL synchronous_commit = on"
    ))
    .await?;
    let held = Instant::now();
    let live = Checkpoint::from_row(&tx.query_one(LOAD_CHECKPOINT, &[&name]).await?)?;
    let copy_name = rebuild_checkpoint(name);
    let mut at = Checkpoint::from_row(&tx.query_one(LOAD_CHECKPOINT, &[&copy_name]).await?)?;

    // The live runner may have applied a few more events since the copy's last batch.
    let projector = S::default();
    let mut applied = 0_u64;
    while at < live {
        let events: Vec<StoredEvent> = feed::read_feed_after(&tx, at, options.batch_size)
            .await?
            .into_iter()
            .take_while(|e| e.checkpoint() <= live)
            .collect();
        let Some(last) = events.last().map(StoredEvent::checkpoint) else {
            break;
        };
        projector.apply(&tx, &events).await?;
        applied += events.len() as u64;
        at = last;
    }
    let target = at.max(live);

    let retired = ident(&retired_schema(name));
    let copy = ident(&rebuild_schema(name));
    let mut statements = format!("CREATE SCHEMA {retired};");
    for table in tables {
        let table = ident(table);
        statements.push_str(&format!(
            "ALTER TABLE public.{table} SET SCHEMA {retired}; \
             ALTER TABLE {copy}.{table} SET SCHEMA public;"
        ));
    }
    tx.batch_execute(&statements).await?;
    save_checkpoint(&tx, name, target).await?;
    tx.execute(FORGET_CHECKPOINT, &[&copy_name]).await?;
    tx.commit().await?;
    Ok((applied, target.position, held.elapsed()))
}

/// Whether a rebuild of `name` is under way somewhere (its copy's checkpoint exists).
pub(crate) async fn copy_checkpoint(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<Checkpoint>, StoreError> {
    let row = client
        .query_opt(
            "SELECT transaction_id::text, global_position FROM subscription_checkpoints \
             WHERE name = $1",
            &[&rebuild_checkpoint(name)],
        )
        .await?;
    row.as_ref().map(Checkpoint::from_row).transpose()
}
