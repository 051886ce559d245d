//! Reading the store by address rather than in feed order: one event by its global
//! position, and one stream's events in sequence order, up to a position or a time,
//! batch by batch. Time travel, histories and event links read through here.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use crate::feed::{event_columns, StoredEvent};
use crate::StoreError;

const SELECT_AT_POSITION: &str = concat!(
    "SELECT ",
    event_columns!("o.owner"),
    " FROM events e LEFT JOIN stream_owners o \
       ON o.aggregate_type = e.aggregate_type AND o.aggregate_id = e.aggregate_id \
     WHERE e.global_position = $1"
);

// Within one stream, sequence order is position order and commit order: the next
// sequence can only be appended once the previous one is committed (the writer, or the
// hash chain trigger for a row without a hash, refuses an event whose predecessor is not
// stored or visible to its own transaction).
const SELECT_STREAM: &str = concat!(
    "SELECT ",
    event_columns!("o.owner"),
    " FROM events e LEFT JOIN stream_owners o \
       ON o.aggregate_type = e.aggregate_type AND o.aggregate_id = e.aggregate_id \
     WHERE e.aggregate_type = $1 AND e.aggregate_id = $2 AND e.sequence > $3 \
       AND ($4::int8 IS NULL OR e.global_position <= $4) \
       AND ($5::timestamptz IS NULL OR e.recorded_at <= $5) \
     ORDER BY e.sequence \
     LIMIT $6"
);

const COUNT_STREAM: &str =
    "SELECT count(*) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2";

/// The committed event at global position `position`, with its stream's owner, or
/// `None` when no event has that position.
pub async fn read_at_position<C: GenericClient>(
    client: &C,
    position: i64,
) -> Result<Option<StoredEvent>, StoreError> {
    let statement = client.prepare_cached(SELECT_AT_POSITION).await?;
    client
        .query_opt(&statement, &[&position])
        .await?
        .as_ref()
        .map(StoredEvent::from_row)
        .transpose()
}

/// How far into a stream to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// To its last committed event.
    Latest,
    /// Events at or before this global position.
    Position(i64),
    /// Events recorded at or before this time.
    Time(DateTime<Utc>),
}

/// Up to `limit` events of stream `aggregate_type`/`aggregate_id` with a sequence after
/// `after_sequence`, oldest first, none beyond `end`. Pass the last sequence read to get
/// the next batch; a batch shorter than `limit` is the last.
pub async fn read_stream<C: GenericClient>(
    client: &C,
    aggregate_type: &str,
    aggregate_id: &str,
    after_sequence: i64,
    end: StreamEnd,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let (position, time) = match end {
        StreamEnd::Latest => (None, None),
        StreamEnd::Position(p) => (Some(p), None),
        StreamEnd::Time(t) => (None, Some(t)),
    };
    let statement = client.prepare_cached(SELECT_STREAM).await?;
    let rows = client
        .query(
            &statement,
            &[
                &aggregate_type,
                &aggregate_id,
                &after_sequence,
                &position,
                &time,
                &limit,
            ],
        )
        .await?;
    rows.iter().map(StoredEvent::from_row).collect()
}

/// How many events stream `aggregate_type`/`aggregate_id` holds.
pub async fn stream_length<C: GenericClient>(
    client: &C,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<i64, StoreError> {
    let statement = client.prepare_cached(COUNT_STREAM).await?;
    let row = client
        .query_one(&statement, &[&aggregate_type, &aggregate_id])
        .await?;
    Ok(row.try_get(0)?)
}

/// Streams of `aggregate_type` that began with an event of type `began` (their first)
/// and have none of type `finished`, oldest first, each with its `began` event's id.
/// Read from the store itself, so a lagging read model cannot hide one; the first events
/// are read through the index of streams' first events.
pub async fn unfinished_streams<C: GenericClient>(
    client: &C,
    aggregate_type: &str,
    began: &str,
    finished: &str,
) -> Result<Vec<(String, uuid::Uuid)>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT b.aggregate_id, b.event_id FROM events b \
             WHERE b.aggregate_type = $2 AND b.sequence = 1 AND b.event_type = $1 \
               AND NOT EXISTS (SELECT 1 FROM events c \
                               WHERE c.aggregate_type = b.aggregate_type \
                                 AND c.aggregate_id = b.aggregate_id AND c.event_type = $3) \
             ORDER BY b.global_position",
        )
        .await?;
    let rows = client
        .query(&statement, &[&began, &aggregate_type, &finished])
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
