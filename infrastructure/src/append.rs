//! Writing events: the writer numbers and hashes them itself, so that PostgreSQL only
//! stores finished rows (no per-row trigger, see `migrations/V20__hash_chain_by_the_writer.sql`).
//!
//! An append is one transaction in two round trips:
//! 1. `BEGIN`, then one query for what only the database knows before the rows exist:
//!    the transaction's id and time, a global position per event (from the identity's
//!    own sequence), and the stored hash of the event before each stream's first new one;
//!    and whether the streams the commands were decided on are still as they saw them
//!    ([`berth_application::read_guard`]), else nothing is written.
//! 2. The `INSERT` of the complete rows, hashes computed here ([`crate::chain`]), then
//!    `COMMIT`.
//!
//! The stored `transaction_id` and `recorded_at` are the column defaults, which are this
//! transaction's id and `now()`, the very values hashed. A predecessor is read as this
//! transaction sees it: committed, or written earlier by the same transaction, so an
//! event can never chain to one that might still roll back. Two writers of the same next
//! sequence still collide on the stream's unique key, whatever they hashed.

use berth_application::read_guard::{StaleRead, StreamAt};
use cqrs_es::persist::{PersistenceError, SerializedEvent};
use deadpool_postgres::GenericClient;
use tokio::sync::OnceCell;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use crate::chain::{event_hash, jsonb_text, rendering_agrees, HashedEvent};
use crate::event_store::{append_error, db_error, unknown};

/// The transaction's id and time, `$1` positions in ascending order, the stored hash (or
/// NULL) of each stream key in `$2`, `$3`, `$4`, in the order given, and the first of the
/// streams in `$5`, `$6` that has moved past its sequence in `$7` (counted from 1; NULL
/// when none has). The positions come from the identity's sequence, named once in the
/// statement (resolved when it is planned, not looked up on every append).
const PRELUDE: &str = "SELECT pg_current_xact_id()::text, \
     to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
     ARRAY(SELECT nextval('events_global_position_seq'::regclass) \
           FROM generate_series(1, $1::int)), \
     ARRAY(SELECT e.hash \
           FROM unnest($2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY AS k(t, i, s, n) \
           LEFT JOIN events e \
             ON e.aggregate_type = k.t AND e.aggregate_id = k.i AND e.sequence = k.s \
           ORDER BY k.n), \
     (SELECT min(g.n) \
      FROM unnest($5::text[], $6::text[], $7::bigint[]) WITH ORDINALITY AS g(t, i, s, n) \
      WHERE EXISTS (SELECT 1 FROM events e \
                    WHERE e.aggregate_type = g.t AND e.aggregate_id = g.i AND e.sequence > g.s))";

const INSERT: &str = "INSERT INTO events (global_position, event_id, aggregate_type, \
     aggregate_id, sequence, event_type, event_version, payload, metadata, prev_hash, hash) \
     OVERRIDING SYSTEM VALUE \
     SELECT p, i, at, ai, s, et, ev, pl::jsonb, md::jsonb, ph, h \
     FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[], \
                 $7::text[], $8::text[], $9::text[], $10::bytea[], $11::bytea[]) \
          AS u(p, i, at, ai, s, et, ev, pl, md, ph, h)";

/// Opens the append's transaction, with the two planner settings its statements need.
///
/// - Their arrays change length with every append, so PostgreSQL would plan them afresh
///   on every execution (a custom plan always looks cheaper than a generic one for an
///   array of unknown length), which costs more than running them: they use the generic
///   plan.
/// - A generic plan made while `events` was small joins the stream keys to a scan of the
///   whole table, and is kept while the table grows. Each key is one lookup in the
///   stream index whatever the table's size, so scanning the table is ruled out.
const BEGIN: &str = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; \
     SET LOCAL enable_seqscan = off";

/// Whether this process's database renders `jsonb` as [`jsonb_text`] does; asked once.
static RENDERING_AGREES: OnceCell<bool> = OnceCell::const_new();

/// Whether the writer hashes what it appends. When the database renders `jsonb`
/// otherwise (a version that changed its text output), hashes computed here would not
/// verify, so the rows go without one and the database's trigger hashes them, as it did
/// for every row before V20: slower, never wrong.
async fn writer_hashes<C: GenericClient>(client: &C) -> Result<bool, PersistenceError> {
    RENDERING_AGREES
        .get_or_try_init(|| async {
            let agrees = rendering_agrees(client).await.map_err(db_error)?;
            if !agrees {
                tracing::warn!(
                    "this PostgreSQL renders jsonb differently from Berth: \
                     the database hashes every event instead"
                );
            }
            Ok(agrees)
        })
        .await
        .copied()
}

/// Appends `events` in a transaction of its own and returns their global positions, in
/// the order given. Several commands' events may go together, each command's
/// consecutive ([`crate::group_commit`]).
///
/// `BEGIN` and `COMMIT` travel with the statements beside them, so this must run to its
/// end: the group committer's writers, which own their connection for the call, are its
/// only callers. Anything that may be cancelled goes through [`append_in_transaction`].
pub(crate) async fn append_committed<C: GenericClient>(
    client: &C,
    events: &[&SerializedEvent],
    guards: &[StreamAt],
) -> Result<Vec<i64>, PersistenceError> {
    let ready = PreparedAppend::for_append(client, events, guards).await?;
    let params = ready.keys.params();
    let (begun, known) = tokio::join!(
        client.batch_execute(BEGIN),
        client.query_one(&ready.prelude, &params)
    );
    if let Err(e) = begun {
        // BEGIN may have gone through and a setting after it failed.
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(db_error(e));
    }
    let rows = match known
        .map_err(db_error)
        .and_then(|row| Rows::numbered(events, &ready, &row))
    {
        Ok(rows) => rows,
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    };
    // A failed INSERT leaves the transaction aborted; the COMMIT behind it then only
    // ends it (PostgreSQL answers it with ROLLBACK), so the connection goes back clean.
    let params = rows.params();
    let (inserted, committed) = tokio::join!(
        client.execute(&ready.insert, &params),
        client.batch_execute("COMMIT")
    );
    inserted.map_err(append_error)?;
    committed.map_err(db_error)?;
    Ok(rows.positions)
}

/// Appends `events` inside the transaction `client` is in, which the caller commits;
/// returns their global positions, in the order given.
pub(crate) async fn append_in_transaction<C: GenericClient>(
    client: &C,
    events: &[&SerializedEvent],
    guards: &[StreamAt],
) -> Result<Vec<i64>, PersistenceError> {
    let ready = PreparedAppend::for_append(client, events, guards).await?;
    let row = client
        .query_one(&ready.prelude, &ready.keys.params())
        .await
        .map_err(db_error)?;
    let rows = Rows::numbered(events, &ready, &row)?;
    client
        .execute(&ready.insert, &rows.params())
        .await
        .map_err(append_error)?;
    Ok(rows.positions)
}

/// What an append needs before its transaction begins.
struct PreparedAppend<'a> {
    prelude: Statement,
    insert: Statement,
    keys: OpeningParams<'a>,
    /// The streams the commands were decided on ([`StreamAt`]).
    guards: &'a [StreamAt],
    /// Whether the writer hashes the rows ([`writer_hashes`]).
    hashed_here: bool,
}

impl<'a> PreparedAppend<'a> {
    async fn for_append<C: GenericClient>(
        client: &C,
        events: &[&'a SerializedEvent],
        guards: &'a [StreamAt],
    ) -> Result<Self, PersistenceError> {
        Ok(Self {
            prelude: client.prepare_cached(PRELUDE).await.map_err(db_error)?,
            insert: client.prepare_cached(INSERT).await.map_err(db_error)?,
            keys: OpeningParams::of(events, guards)?,
            guards,
            hashed_here: writer_hashes(client).await?,
        })
    }
}

/// The opening query's parameters: the batch's size; the stored events it chains to (for
/// each event that does not follow the event before it in the batch, its stream's
/// previous sequence; none for a first event); and the read guards.
struct OpeningParams<'a> {
    /// Events in the batch.
    count: i32,
    types: Vec<&'a str>,
    ids: Vec<&'a str>,
    sequences: Vec<i64>,
    /// For each event, which key holds its predecessor's hash (`None`: the event before
    /// it in the batch, or no predecessor at all).
    key_of: Vec<Option<usize>>,
    /// The streams that must not have moved on ([`StreamAt`]), column by column.
    guard_types: Vec<&'a str>,
    guard_ids: Vec<&'a str>,
    guard_sequences: Vec<i64>,
}

impl<'a> OpeningParams<'a> {
    fn of(
        events: &[&'a SerializedEvent],
        guards: &'a [StreamAt],
    ) -> Result<Self, PersistenceError> {
        let mut keys = Self {
            count: i32::try_from(events.len()).map_err(unknown)?,
            types: Vec::new(),
            ids: Vec::new(),
            sequences: Vec::new(),
            key_of: Vec::with_capacity(events.len()),
            guard_types: guards.iter().map(|g| g.aggregate_type.as_str()).collect(),
            guard_ids: guards.iter().map(|g| g.aggregate_id.as_str()).collect(),
            guard_sequences: guards
                .iter()
                .map(|g| i64::try_from(g.sequence).map_err(unknown))
                .collect::<Result<_, _>>()?,
        };
        let mut before: Option<&SerializedEvent> = None;
        for event in events {
            let sequence = i64::try_from(event.sequence).map_err(unknown)?;
            let follows = before.is_some_and(|b| {
                b.aggregate_type == event.aggregate_type
                    && b.aggregate_id == event.aggregate_id
                    && b.sequence + 1 == event.sequence
            });
            if follows || sequence <= 1 {
                keys.key_of.push(None);
            } else {
                keys.key_of.push(Some(keys.sequences.len()));
                keys.types.push(&event.aggregate_type);
                keys.ids.push(&event.aggregate_id);
                keys.sequences.push(sequence - 1);
            }
            before = Some(event);
        }
        Ok(keys)
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.count,
            &self.types,
            &self.ids,
            &self.sequences,
            &self.guard_types,
            &self.guard_ids,
            &self.guard_sequences,
        ]
    }
}

/// The rows to insert, column by column, hashed and numbered.
struct Rows<'a> {
    positions: Vec<i64>,
    event_ids: Vec<Uuid>,
    types: Vec<&'a str>,
    ids: Vec<&'a str>,
    sequences: Vec<i64>,
    event_types: Vec<&'a str>,
    versions: Vec<&'a str>,
    payloads: Vec<String>,
    metadata: Vec<String>,
    prev_hashes: Vec<Option<Vec<u8>>>,
    hashes: Vec<Option<Vec<u8>>>,
}

impl<'a> Rows<'a> {
    /// The rows of `events`, numbered from what the opening query returned (`known`), and
    /// hashed unless the writer leaves that to the trigger ([`writer_hashes`]).
    fn numbered(
        events: &[&'a SerializedEvent],
        ready: &PreparedAppend<'_>,
        known: &Row,
    ) -> Result<Self, PersistenceError> {
        let (keys, guards, hashed_here) = (&ready.keys, ready.guards, ready.hashed_here);
        let stale: Option<i64> = known.try_get(4).map_err(db_error)?;
        if let Some(n) = stale {
            let guard = usize::try_from(n - 1)
                .ok()
                .and_then(|i| guards.get(i))
                .ok_or_else(|| {
                    PersistenceError::UnknownError(
                        format!("the store named guard {n} of {}", guards.len()).into(),
                    )
                })?;
            return Err(PersistenceError::UnknownError(Box::new(StaleRead {
                aggregate_type: guard.aggregate_type.clone(),
                aggregate_id: guard.aggregate_id.clone(),
                sequence: guard.sequence,
            })));
        }
        let transaction_id: String = known.try_get(0).map_err(db_error)?;
        let recorded_at: String = known.try_get(1).map_err(db_error)?;
        let mut positions: Vec<i64> = known.try_get(2).map_err(db_error)?;
        // Ascending, so a stream's sequence order is its position order.
        positions.sort_unstable();
        let stored: Vec<Option<Vec<u8>>> = known.try_get(3).map_err(db_error)?;
        if positions.len() != events.len() || stored.len() != keys.sequences.len() {
            return Err(PersistenceError::UnknownError(
                "the store numbered a different count of events".into(),
            ));
        }
        let count = events.len();
        let mut rows = Self {
            positions,
            event_ids: Vec::with_capacity(count),
            types: Vec::with_capacity(count),
            ids: Vec::with_capacity(count),
            sequences: Vec::with_capacity(count),
            event_types: Vec::with_capacity(count),
            versions: Vec::with_capacity(count),
            payloads: Vec::with_capacity(count),
            metadata: Vec::with_capacity(count),
            prev_hashes: Vec::with_capacity(count),
            hashes: Vec::with_capacity(count),
        };
        for (n, event) in events.iter().enumerate() {
            let sequence = i64::try_from(event.sequence).map_err(unknown)?;
            let prev_hash = match keys.key_of[n] {
                Some(key) => match &stored[key] {
                    Some(hash) => Some(hash.clone()),
                    None => {
                        return Err(PersistenceError::UnknownError(
                            format!(
                                "event {sequence} of {}/{} has no predecessor to chain to",
                                event.aggregate_type, event.aggregate_id
                            )
                            .into(),
                        ))
                    }
                },
                None if sequence > 1 => rows.hashes.last().cloned().flatten(),
                None => None,
            };
            let event_id = Uuid::now_v7();
            let payload = jsonb_text(&event.payload);
            let metadata = jsonb_text(&event.metadata);
            let hash = hashed_here.then(|| {
                event_hash(
                    prev_hash.as_deref(),
                    &HashedEvent {
                        position: rows.positions[n],
                        transaction_id: &transaction_id,
                        event_id: &event_id.to_string(),
                        aggregate_type: &event.aggregate_type,
                        aggregate_id: &event.aggregate_id,
                        sequence,
                        event_type: &event.event_type,
                        event_version: &event.event_version,
                        payload: &payload,
                        metadata: &metadata,
                        recorded_at: &recorded_at,
                    },
                )
                .to_vec()
            });
            rows.event_ids.push(event_id);
            rows.types.push(&event.aggregate_type);
            rows.ids.push(&event.aggregate_id);
            rows.sequences.push(sequence);
            rows.event_types.push(&event.event_type);
            rows.versions.push(&event.event_version);
            rows.payloads.push(payload);
            rows.metadata.push(metadata);
            rows.prev_hashes.push(prev_hash.filter(|_| hashed_here));
            rows.hashes.push(hash);
        }
        Ok(rows)
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 11] {
        [
            &self.positions,
            &self.event_ids,
            &self.types,
            &self.ids,
            &self.sequences,
            &self.event_types,
            &self.versions,
            &self.payloads,
            &self.metadata,
            &self.prev_hashes,
            &self.hashes,
        ]
    }
}
