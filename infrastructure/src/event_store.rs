//! The PostgreSQL event repository behind cqrs-es's `PersistedEventStore`.
//!
//! A command's events go in as one statement (`UNNEST` of arrays), numbered and hashed
//! by the writer ([`crate::append`]); commands appending at the same moment share that
//! statement and its commit ([`crate::group_commit`]). A stale sequence collides on
//! the `(aggregate_type, aggregate_id, sequence)` unique key and is reported as an
//! optimistic-lock conflict, which the command bus retries. A snapshot update is guarded
//! inside the same transaction, so "conflict" is never reported for events that were in
//! fact saved. Once committed, the append is announced to listeners ([`Announcer`]).

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use deadpool_postgres::GenericClient;
use deadpool_postgres::Pool;
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use berth_application::read_guard;

use crate::announce::Announcer;
use crate::append::append_in_transaction;
use crate::group_commit::GroupCommitter;
use crate::StoreError;

const SELECT_STREAM: &str = "SELECT aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata FROM events \
     WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence";

const SELECT_ALL_OF_TYPE: &str = "SELECT aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata FROM events \
     WHERE aggregate_type = $1 ORDER BY global_position";

const SELECT_SNAPSHOT: &str = "SELECT last_sequence, current_snapshot, payload FROM snapshots \
     WHERE aggregate_type = $1 AND aggregate_id = $2";

const UPSERT_SNAPSHOT: &str = "INSERT INTO snapshots \
     (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
     SET last_sequence = excluded.last_sequence, current_snapshot = excluded.current_snapshot, \
         payload = excluded.payload \
     WHERE snapshots.current_snapshot = excluded.current_snapshot - 1";

/// Stores and loads events in PostgreSQL. Cheap to clone (shares the pool).
#[derive(Clone)]
pub struct PostgresEventRepository {
    pool: Pool,
    announcer: Announcer,
    committer: GroupCommitter,
}

impl PostgresEventRepository {
    /// A repository using connections from `pool`.
    pub fn new(pool: Pool) -> Self {
        Self {
            announcer: Announcer::new(pool.clone()),
            committer: GroupCommitter::new(pool.clone()),
            pool,
        }
    }

    /// The pool it uses.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn select_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_sequence: i64,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let client = self.pool.get().await.map_err(connection_error)?;
        let statement = client
            .prepare_cached(SELECT_STREAM)
            .await
            .map_err(db_error)?;
        let rows = client
            .query(
                &statement,
                &[&aggregate_type, &aggregate_id, &after_sequence],
            )
            .await
            .map_err(db_error)?;
        rows.iter().map(serialized_event).collect()
    }

    /// Appends `events` (all of one aggregate, consecutive sequences) in a transaction
    /// of its own and returns their global positions. Usable outside cqrs-es (tests,
    /// tools); commands go through the group committer instead.
    pub async fn append(
        client: &mut deadpool_postgres::Client,
        events: &[SerializedEvent],
    ) -> Result<Vec<i64>, PersistenceError> {
        let tx = client.transaction().await.map_err(db_error)?;
        let positions = Self::append_in_transaction(&tx, events).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(positions)
    }

    /// Appends `events` (all of one aggregate, consecutive sequences) inside the
    /// transaction `client` is in, which the caller commits; returns their global
    /// positions. Inside a command, its read guards apply ([`read_guard`]).
    pub async fn append_in_transaction<C: GenericClient>(
        client: &C,
        events: &[SerializedEvent],
    ) -> Result<Vec<i64>, PersistenceError> {
        let events: Vec<&SerializedEvent> = events.iter().collect();
        append_in_transaction(client, &events, &read_guard::current()).await
    }
}

impl PersistedEventRepository for PostgresEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.select_stream(A::TYPE, aggregate_id, 0).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let after = i64::try_from(last_sequence).map_err(unknown)?;
        self.select_stream(A::TYPE, aggregate_id, after).await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let client = self.pool.get().await.map_err(connection_error)?;
        let statement = client
            .prepare_cached(SELECT_SNAPSHOT)
            .await
            .map_err(db_error)?;
        let Some(row) = client
            .query_opt(&statement, &[&A::TYPE, &aggregate_id])
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let last_sequence: i64 = row.try_get(0).map_err(db_error)?;
        let current_snapshot: i64 = row.try_get(1).map_err(db_error)?;
        Ok(Some(SerializedSnapshot {
            aggregate_id: aggregate_id.to_string(),
            aggregate: row.try_get(2).map_err(db_error)?,
            current_sequence: usize::try_from(last_sequence).map_err(unknown)?,
            current_snapshot: usize::try_from(current_snapshot).map_err(unknown)?,
        }))
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if events.is_empty() && snapshot_update.is_none() {
            return Ok(());
        }
        let positions = match snapshot_update {
            // Its own transaction, shared with the commands running now.
            None => {
                self.committer
                    .append_guarded(events, read_guard::current())
                    .await?
            }
            Some((aggregate_id, payload, current_snapshot)) => {
                let mut client = self.pool.get().await.map_err(connection_error)?;
                let tx = client.transaction().await.map_err(db_error)?;
                let positions = Self::append_in_transaction(&tx, events).await?;
                let last_sequence = events.last().map_or(0, |e| e.sequence);
                let updated = tx
                    .execute(
                        UPSERT_SNAPSHOT,
                        &[
                            &A::TYPE,
                            &aggregate_id,
                            &i64::try_from(last_sequence).map_err(unknown)?,
                            &i64::try_from(current_snapshot).map_err(unknown)?,
                            &payload,
                        ],
                    )
                    .await
                    .map_err(db_error)?;
                if updated == 0 {
                    // Someone else moved the snapshot on: nothing of ours is committed.
                    tx.rollback().await.map_err(db_error)?;
                    return Err(PersistenceError::OptimisticLockError);
                }
                tx.commit().await.map_err(db_error)?;
                positions
            }
        };
        if let Some(last) = positions.iter().max() {
            berth_application::receipt::record_position(*last);
            self.announcer.announce();
        }
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let events = self.get_events::<A>(aggregate_id).await?;
        Ok(replay(events))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let client = self.pool.get().await.map_err(connection_error)?;
        let rows = client
            .query(SELECT_ALL_OF_TYPE, &[&A::TYPE])
            .await
            .map_err(db_error)?;
        let events = rows
            .iter()
            .map(serialized_event)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(replay(events))
    }
}

fn replay(events: Vec<SerializedEvent>) -> ReplayStream {
    let (mut feed, stream) = ReplayStream::new(events.len().max(1));
    tokio::spawn(async move {
        for event in events {
            if feed.push(Ok(event)).await.is_err() {
                break;
            }
        }
    });
    stream
}

fn serialized_event(row: &Row) -> Result<SerializedEvent, PersistenceError> {
    let sequence: i64 = row.try_get(2).map_err(db_error)?;
    Ok(SerializedEvent::new(
        row.try_get(1).map_err(db_error)?,
        usize::try_from(sequence).map_err(unknown)?,
        row.try_get(0).map_err(db_error)?,
        row.try_get(3).map_err(db_error)?,
        row.try_get(4).map_err(db_error)?,
        row.try_get(5).map_err(db_error)?,
        row.try_get(6).map_err(db_error)?,
    ))
}

pub(crate) fn append_error(e: tokio_postgres::Error) -> PersistenceError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        PersistenceError::OptimisticLockError
    } else {
        db_error(e)
    }
}

pub(crate) fn db_error(e: tokio_postgres::Error) -> PersistenceError {
    let err = StoreError::Database(e);
    if err.is_unavailable() {
        PersistenceError::ConnectionError(Box::new(err))
    } else {
        PersistenceError::UnknownError(Box::new(err))
    }
}

fn connection_error(e: deadpool_postgres::PoolError) -> PersistenceError {
    PersistenceError::ConnectionError(Box::new(StoreError::Pool(e)))
}

pub(crate) fn unknown(e: impl std::error::Error + Send + Sync + 'static) -> PersistenceError {
    PersistenceError::UnknownError(Box::new(e))
}
