//! Tamper evidence: walks the event log stream by stream and checks each event's hash
//! chain (see `migrations/V6__event_hash_chain.sql`), reporting the first break.
//!
//! An imported event's hash covers the transaction it was first committed in
//! (`origin_transaction_id`, see `migrations/V9__imported_events.sql`), not the one that
//! imported it; for every other event that is its own `transaction_id`.
//!
//! The hash is recomputed here, in Rust, from the stored row, rather than by the
//! database's own function, so a replaced trigger function is no help to a tamperer.

use std::fmt;

use deadpool_postgres::Pool;
use tokio_postgres::Row;

use crate::chain::{event_hash, HashedEvent};
use crate::StoreError;

/// Rows read per round trip: memory stays constant whatever the log's size.
const BATCH: i64 = 1_000;

/// The next batch after a stream key, in stream order (the unique index's order). The
/// text renderings are the canonical forms the trigger hashes.
const SELECT_AFTER: &str = "SELECT global_position, \
     coalesce(origin_transaction_id, transaction_id)::text, event_id::text, \
     aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text, \
     metadata::text, to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
     prev_hash, hash FROM events \
     WHERE (aggregate_type, aggregate_id, sequence) > ($1, $2, $3) \
     ORDER BY aggregate_type, aggregate_id, sequence LIMIT $4";

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events checked (up to and including the first break).
    pub events: u64,
    /// Streams (aggregates) seen.
    pub streams: u64,
    /// The first event whose chain does not hold, if any.
    pub first_break: Option<ChainBreak>,
}

/// An event at which the hash chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// Its global position.
    pub position: i64,
    /// Its aggregate type.
    pub aggregate_type: String,
    /// Its aggregate id.
    pub aggregate_id: String,
    /// Its sequence in the stream.
    pub sequence: i64,
    /// What is wrong with it.
    pub kind: BreakKind,
}

/// How a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakKind {
    /// The stream skips sequences: the events from `expected` up to this one are missing.
    Missing {
        /// The sequence that should have come next.
        expected: i64,
    },
    /// The stored `prev_hash` is not the previous event's stored hash.
    BrokenLink,
    /// The row's content no longer matches its stored hash: it was altered.
    HashMismatch,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "position {} ({}/{} sequence {}): ",
            self.position, self.aggregate_type, self.aggregate_id, self.sequence
        )?;
        match self.kind {
            BreakKind::Missing { expected } if expected + 1 == self.sequence => {
                write!(f, "sequence {expected} is missing before it")
            }
            BreakKind::Missing { expected } => write!(
                f,
                "sequences {expected} to {} are missing before it",
                self.sequence - 1
            ),
            BreakKind::BrokenLink => {
                f.write_str("its prev_hash does not match the previous event's hash")
            }
            BreakKind::HashMismatch => {
                f.write_str("its content does not match its hash (the row was altered)")
            }
        }
    }
}

/// One stored event, as read for checking.
struct Checked {
    position: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    prev_hash: Option<Vec<u8>>,
    hash: Vec<u8>,
    computed: [u8; 32],
}

/// Walks every stream in order and checks each event's sequence, link and hash; stops
/// at the first break.
#[tracing::instrument(skip_all)]
pub async fn verify(pool: &Pool) -> Result<VerifyReport, StoreError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(SELECT_AFTER).await?;
    let mut report = VerifyReport {
        events: 0,
        streams: 0,
        first_break: None,
    };
    // The last event checked: its stream, sequence and stored hash.
    let mut last: Option<(String, String, i64, Vec<u8>)> = None;
    loop {
        let (key_type, key_id, key_seq) = match &last {
            Some((t, i, s, _)) => (t.as_str(), i.as_str(), *s),
            None => ("", "", 0),
        };
        let rows = client
            .query(&statement, &[&key_type, &key_id, &key_seq, &BATCH])
            .await?;
        let fetched = rows.len();
        for row in &rows {
            let event = checked(row)?;
            report.events += 1;
            let same_stream = last
                .as_ref()
                .is_some_and(|(t, i, _, _)| *t == event.aggregate_type && *i == event.aggregate_id);
            let (expected, expected_prev) = match &last {
                Some((_, _, s, h)) if same_stream => (s + 1, Some(h.as_slice())),
                _ => {
                    report.streams += 1;
                    (1, None)
                }
            };
            let kind = if event.sequence != expected {
                Some(BreakKind::Missing { expected })
            } else if event.prev_hash.as_deref() != expected_prev {
                Some(BreakKind::BrokenLink)
            } else if event.computed[..] != event.hash[..] {
                Some(BreakKind::HashMismatch)
            } else {
                None
            };
            if let Some(kind) = kind {
                report.first_break = Some(ChainBreak {
                    position: event.position,
                    aggregate_type: event.aggregate_type,
                    aggregate_id: event.aggregate_id,
                    sequence: event.sequence,
                    kind,
                });
                return Ok(report);
            }
            last = Some((
                event.aggregate_type,
                event.aggregate_id,
                event.sequence,
                event.hash,
            ));
        }
        if i64::try_from(fetched).unwrap_or(i64::MAX) < BATCH {
            return Ok(report);
        }
    }
}

fn checked(row: &Row) -> Result<Checked, StoreError> {
    let position: i64 = row.try_get(0)?;
    let sequence: i64 = row.try_get(5)?;
    let texts = [1, 2, 3, 4, 6, 7, 8, 9, 10]
        .map(|i| row.try_get::<_, String>(i))
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let [transaction_id, event_id, aggregate_type, aggregate_id, event_type, event_version, payload, metadata, recorded_at] =
        <[String; 9]>::try_from(texts)
            .map_err(|_| StoreError::Malformed("event row shape".into()))?;
    let prev_hash: Option<Vec<u8>> = row.try_get(11)?;
    let hash: Vec<u8> = row.try_get(12)?;
    let computed = event_hash(
        prev_hash.as_deref(),
        &HashedEvent {
            position,
            transaction_id: &transaction_id,
            event_id: &event_id,
            aggregate_type: &aggregate_type,
            aggregate_id: &aggregate_id,
            sequence,
            event_type: &event_type,
            event_version: &event_version,
            payload: &payload,
            metadata: &metadata,
            recorded_at: &recorded_at,
        },
    );
    Ok(Checked {
        position,
        aggregate_type,
        aggregate_id,
        sequence,
        prev_hash,
        hash,
        computed,
    })
}
