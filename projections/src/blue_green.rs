//! Blue-green rebuilds: a projection is built again from the first event into copies of
//! its tables in a schema of their own (`berth_rebuild_<name>`) while the live tables
//! keep answering queries and the live runner keeps them current. Once the copy has
//! caught up, one short transaction applies the few events the live runner got further,
//! swaps the copies into `public` and moves the live checkpoint to where the copy is.
//!
//! The copy is written by the projection's own projector through a connection whose
//! `search_path` starts with the rebuild schema, so the projector's SQL needs no change;
//! it follows the feed under its own checkpoint (`<name>@rebuild`) in large batches,
//! each one multi-row statement per table as in normal running.
//!
//! Readers never see a half-built model: the swap renames tables under an exclusive lock
//! held only for the swap itself; statements prepared against the old tables are planned
//! again by PostgreSQL against the new ones.

use std::future::Future;
use std::time::{Duration, Instant};

use berth_infrastructure::db::Database;
use berth_infrastructure::feed::{self, Checkpoint, FeedFilter, StoredEvent};
use berth_infrastructure::subscription::{
    RunnerOptions, Subscriber, SubscriptionRunner, LOAD_CHECKPOINT, SAVE_CHECKPOINT,
};
use berth_infrastructure::StoreError;
use deadpool_postgres::{GenericClient, Pool, Transaction};
use serde::Serialize;

use crate::shadow_tables::{clone_table, ident};

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

/// A projector writing under another checkpoint name.
struct Renamed<S> {
    inner: S,
    name: String,
}

impl<S: Subscriber> Subscriber for Renamed<S> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn apply(&self, tx: &Transaction<'_>, events: &[StoredEvent]) -> Result<(), StoreError> {
        self.inner.apply(tx, events).await
    }

    async fn reset(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        self.inner.reset(tx).await
    }
}

const FORGET_CHECKPOINT: &str = "DELETE FROM subscription_checkpoints WHERE name = $1";

/// Rebuilds projection `name` (owning `tables`, written by a fresh `S`) blue-green,
/// awaiting `before_swap` once the copy has caught up. Waits while another rebuild of
/// the same projection runs anywhere.
pub(crate) async fn rebuild<S: Subscriber + Default>(
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

async fn build_and_swap<S: Subscriber + Default>(
    db: &Database,
    pool: &Pool,
    name: &str,
    tables: &[&str],
    options: &RebuildOptions,
    started: Instant,
    before_swap: impl Future<Output = ()>,
) -> Result<RebuildReport, StoreError> {
    discard_copy(pool, name).await?;
    prepare_copy(pool, name, tables).await?;

    let mut config = db.config().clone();
    // Keep whatever options the database URL carries; the copy's schema comes first.
    let search_path = format!("-c search_path={},public", rebuild_schema(name));
    let connection_options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} {search_path}"),
        _ => search_path,
    };
    config.options(connection_options);
    let copy_db = Database::from_config(config);
    let copy_pool = copy_db.pool(1)?;
    let runner = SubscriptionRunner::new(
        copy_db,
        copy_pool.clone(),
        Renamed {
            inner: S::default(),
            name: rebuild_checkpoint(name),
        },
        RunnerOptions {
            batch_size: options.batch_size,
            ..RunnerOptions::default()
        },
    );
    let mut events = 0_u64;
    loop {
        let (_, applied) = runner.apply_batch().await?;
        if applied == 0 {
            break;
        }
        events += applied as u64;
    }
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
                while runner.apply_batch().await?.1 > 0 {}
            }
            Err(e) => {
                copy_pool.close();
                return Err(e);
            }
        }
    }
}

fn is_lock_timeout(error: &StoreError) -> bool {
    match error {
        StoreError::Database(e) => {
            e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
        }
        _ => false,
    }
}

/// Creates the copy's schema with empty tables shaped like the live ones.
async fn prepare_copy(pool: &Pool, name: &str, tables: &[&str]) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("CREATE SCHEMA {}", ident(&rebuild_schema(name))))
        .await?;
    for table in tables {
        clone_table(&tx, &rebuild_schema(name), table).await?;
    }
    tx.execute(FORGET_CHECKPOINT, &[&rebuild_checkpoint(name)])
        .await?;
    tx.commit().await?;
    Ok(())
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
async fn swap<S: Subscriber + Default>(
    copy_pool: &Pool,
    name: &str,
    tables: &[&str],
    options: &RebuildOptions,
) -> Result<(u64, i64, Duration), StoreError> {
    let mut client = copy_pool.get().await?;
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'"))
        .await?;
    let held = Instant::now();
    let live = Checkpoint::from_row(&tx.query_one(LOAD_CHECKPOINT, &[&name]).await?)?;
    let copy_name = rebuild_checkpoint(name);
    let mut at = Checkpoint::from_row(&tx.query_one(LOAD_CHECKPOINT, &[&copy_name]).await?)?;

    // The live runner may have applied a few more events since the copy's last batch.
    let projector = S::default();
    let mut applied = 0_u64;
    while at < live {
        let events: Vec<StoredEvent> =
            feed::read_after(&tx, at, options.batch_size, &FeedFilter::default())
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
    tx.execute(
        SAVE_CHECKPOINT,
        &[&name, &target.transaction_id.to_string(), &target.position],
    )
    .await?;
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
