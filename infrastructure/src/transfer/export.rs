//! Writing the event log as JSON Lines, in feed order, in batches.

use deadpool_postgres::{GenericClient, Pool};
use serde_json::value::RawValue;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_postgres::{IsolationLevel, Row};

use super::{CheckpointLine, EventLine, TransferError};
use crate::checkpoint::checkpoints;
use crate::feed::{self, parse_xid, Checkpoint};
use crate::StoreError;

/// Events read per round trip: memory stays constant whatever the log's size.
const BATCH: i64 = 1_000;

/// Bytes gathered before they are handed to the writer.
const FLUSH_AT: usize = 256 * 1024;

/// The feed after a checkpoint, as `feed::read_after` reads it (same order, same
/// visibility rule), with every column. The text renderings are the canonical forms
/// the hash covers.
const EXPORT_AFTER: &str = "SELECT e.transaction_id::text, e.global_position, \
     coalesce(e.origin_transaction_id, e.transaction_id)::text, e.event_id, \
     e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, \
     e.payload::text, e.metadata::text, \
     to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
     e.prev_hash, e.hash \
     FROM events e \
     WHERE (e.transaction_id, e.global_position) > ($1::text::xid8, $2) \
       AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY e.transaction_id, e.global_position \
     LIMIT $3";

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportReport {
    /// Events written.
    pub events: u64,
    /// The position of the last one (`None` when there was none): the cursor for a
    /// later `--after`.
    pub last_position: Option<i64>,
    /// Signed checkpoints written after the events.
    pub checkpoints: u64,
}

/// Writes every event after global position `after` (in feed order, as `after=` cursors
/// mean everywhere) to `out` as JSON Lines, and flushes it.
///
/// Reads inside one repeatable-read transaction, so the file is the log as it stood
/// when the export began, whatever is appended meanwhile; and only events the feed can
/// see, so no event still being written can be left out of the middle of the file.
#[tracing::instrument(skip_all, fields(after))]
pub async fn export_events<W: AsyncWrite + Unpin>(
    pool: &Pool,
    after: i64,
    out: &mut W,
) -> Result<ExportReport, TransferError> {
    let mut client = pool.get().await?;
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let statement = tx.prepare_cached(EXPORT_AFTER).await?;
    let start = feed::checkpoint_at_position(&tx, after).await?;
    let mut at = start;
    let mut report = ExportReport {
        events: 0,
        last_position: None,
        checkpoints: 0,
    };
    let mut buffer = Vec::with_capacity(FLUSH_AT + 64 * 1024);
    loop {
        let rows = tx
            .query(
                &statement,
                &[&at.transaction_id.to_string(), &at.position, &BATCH],
            )
            .await?;
        for row in &rows {
            let (checkpoint, line) = event_line(row)?;
            serde_json::to_writer(&mut buffer, &line)
                .map_err(|e| StoreError::Malformed(format!("event {}: {e}", line.position)))?;
            buffer.push(b'\n');
            if buffer.len() >= FLUSH_AT {
                out.write_all(&buffer).await.map_err(TransferError::Write)?;
                buffer.clear();
            }
            at = checkpoint;
            report.events += 1;
            report.last_position = Some(line.position);
        }
        if i64::try_from(rows.len()).unwrap_or(i64::MAX) < BATCH {
            break;
        }
    }
    // The signed checkpoints of what was exported, after the events they cover, so
    // whoever holds the public key can hold the file to them.
    let signed = checkpoints(&tx)
        .await
        .map_err(|e| StoreError::Malformed(e.to_string()))?;
    for checkpoint in signed.into_iter().filter(|c| c.checkpoint() > start) {
        serde_json::to_writer(&mut buffer, &CheckpointLine { checkpoint })
            .map_err(|e| StoreError::Malformed(format!("a checkpoint: {e}")))?;
        buffer.push(b'\n');
        report.checkpoints += 1;
    }
    out.write_all(&buffer).await.map_err(TransferError::Write)?;
    out.flush().await.map_err(TransferError::Write)?;
    tx.commit().await?;
    tracing::info!(
        events = report.events,
        last_position = report.last_position,
        "exported the event log"
    );
    Ok(report)
}

/// The feed checkpoint of a row and its line.
fn event_line(row: &Row) -> Result<(Checkpoint, EventLine), TransferError> {
    let checkpoint = Checkpoint::from_row(row)?;
    let json = |index: usize| -> Result<Box<RawValue>, TransferError> {
        let text: String = row.try_get(index)?;
        RawValue::from_string(text).map_err(|e| {
            StoreError::Malformed(format!("event {}: stored JSON: {e}", checkpoint.position)).into()
        })
    };
    let prev_hash: Option<Vec<u8>> = row.try_get(12)?;
    let hash: Vec<u8> = row.try_get(13)?;
    let line = EventLine {
        position: checkpoint.position,
        transaction_id: parse_xid(&row.try_get::<_, String>(2)?)?,
        event_id: row.try_get(3)?,
        aggregate_type: row.try_get(4)?,
        aggregate_id: row.try_get(5)?,
        sequence: row.try_get(6)?,
        event_type: row.try_get(7)?,
        event_version: row.try_get(8)?,
        payload: json(9)?,
        metadata: json(10)?,
        recorded_at: row.try_get(11)?,
        prev_hash: prev_hash.map(hex::encode),
        hash: hex::encode(hash),
    };
    Ok((checkpoint, line))
}
