//! Writing an export into an empty store: multi-row inserts that keep every column, a
//! hash check on every event, and transactions cut so the feed order is the source's.

use deadpool_postgres::{GenericClient, Pool, Transaction};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::line::{ValidLine, CHECKPOINT_LINE_START};
use super::{DataKeys, TransferError};

/// Lines sent per statement.
const BATCH: usize = 1_000;

/// Stops every other writer until the transaction ends; readers go on.
const LOCK_EVENTS: &str = "LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE";

const COUNT_EVENTS: &str = "SELECT count(*), coalesce(max(global_position), 0) FROM events";

/// `transaction_id` is the column's default (this transaction); no hash is sent, so the
/// chain trigger sets `prev_hash` and `hash`. The source's transaction id goes to
/// `origin_transaction_id`, which the hash covers.
const INSERT: &str = "INSERT INTO events (global_position, origin_transaction_id, event_id, \
     aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, \
     recorded_at) OVERRIDING SYSTEM VALUE \
     SELECT p, x::xid8, i, at, ai, s, et, ev, pl::jsonb, md::jsonb, ra \
     FROM UNNEST($1::bigint[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::bigint[], \
                 $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[]) \
          AS u(p, x, i, at, ai, s, et, ev, pl, md, ra) \
     RETURNING global_position, prev_hash, hash";

/// New events get positions after the highest imported one.
const ADVANCE_POSITIONS: &str =
    "SELECT setval(pg_get_serial_sequence('events', 'global_position'), $1)";

/// Puts subscribers at the last imported event: this transaction's, at `$2`.
const SKIP_SUBSCRIBERS: &str = "INSERT INTO subscription_checkpoints \
     (name, transaction_id, global_position) \
     SELECT n, pg_current_xact_id(), $2 FROM unnest($1::text[]) AS n \
     ON CONFLICT (name) DO UPDATE SET transaction_id = excluded.transaction_id, \
         global_position = excluded.global_position, updated_at = now()";

/// How an import treats what is not in the events file.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Subscribers with side effects outside the database (the process manager, the
    /// bulk driver): put at the last imported event, so they do not act on history
    /// again. Every other subscriber, projections included, starts from the first event.
    pub skip_history: Vec<String>,
    /// Data keys to write with the first transaction, into a store that has none.
    pub data_keys: Option<DataKeys>,
}

/// What an import wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    /// Events imported.
    pub events: u64,
    /// The position of the last event of the file (`None` when it had none).
    pub last_position: Option<i64>,
    /// Transactions committed: more than one when concurrent transactions of the source
    /// interleaved their positions.
    pub transactions: u64,
}

/// Imports an export read from `input` into the store behind `pool`, which must hold no
/// event, with what `options` adds.
///
/// Each line is validated before it is sent, and after each statement the hash and
/// previous hash the store computed for every event are compared with the file's: a
/// difference fails the import naming the line and position.
///
/// Feed order is kept exactly. Events of one transaction are read in position order, so
/// the file is cut into transactions wherever a line's position is lower than the one
/// before it (concurrent transactions of the source interleaved their positions); an
/// export of a store whose transactions never interleaved goes in as one transaction,
/// all or nothing. When the file had to be cut, a failure leaves the transactions
/// already committed in place: the store is then to be dropped and created again.
#[tracing::instrument(skip_all)]
pub async fn import_events<R: AsyncBufRead + Unpin>(
    pool: &Pool,
    input: R,
    options: &ImportOptions,
) -> Result<ImportReport, TransferError> {
    let mut client = pool.get().await?;
    let mut lines = Lines::new(input);
    let mut report = ImportReport {
        events: 0,
        last_position: None,
        transactions: 0,
    };
    let mut highest = 0;
    // The line that began the next transaction, when the previous one was cut.
    let mut carried: Option<ValidLine> = None;
    loop {
        let tx = client.transaction().await?;
        tx.batch_execute(LOCK_EVENTS).await?;
        if report.transactions == 0 {
            let row = tx.query_one(COUNT_EVENTS, &[]).await?;
            let (events, head): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            if events > 0 {
                return Err(TransferError::NotEmpty { events, head });
            }
            if let Some(keys) = &options.data_keys {
                keys.insert(&tx).await?;
            }
        }
        let mut batch: Vec<ValidLine> = carried.take().into_iter().collect();
        let mut previous = batch.first().map(|l| l.position);
        let finished = loop {
            let Some(line) = lines.next().await? else {
                break true;
            };
            if previous.is_some_and(|p| line.position < p) {
                carried = Some(line);
                break false;
            }
            previous = Some(line.position);
            batch.push(line);
            if batch.len() >= BATCH {
                insert(&tx, &batch).await?;
                note(&mut report, &mut highest, &batch);
                batch.clear();
            }
        };
        insert(&tx, &batch).await?;
        note(&mut report, &mut highest, &batch);
        if highest > 0 {
            tx.execute(ADVANCE_POSITIONS, &[&highest]).await?;
        }
        if finished {
            if let Some(last) = report.last_position {
                tx.execute(SKIP_SUBSCRIBERS, &[&options.skip_history, &last])
                    .await?;
            }
        }
        tx.commit().await?;
        report.transactions += 1;
        if finished {
            break;
        }
        tracing::info!(
            events = report.events,
            "cut the import at a transaction boundary of the source"
        );
    }
    tracing::info!(
        events = report.events,
        last_position = report.last_position,
        transactions = report.transactions,
        "imported the event log"
    );
    Ok(report)
}

fn note(report: &mut ImportReport, highest: &mut i64, batch: &[ValidLine]) {
    if let Some(last) = batch.last() {
        report.events += batch.len() as u64;
        report.last_position = Some(last.position);
        *highest = (*highest).max(last.position);
    }
}

/// Inserts `batch` (positions increasing) in one statement and checks each event's
/// hashes against the file's.
async fn insert(tx: &Transaction<'_>, batch: &[ValidLine]) -> Result<(), TransferError> {
    let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
        return Ok(());
    };
    let statement = tx.prepare_cached(INSERT).await?;
    let column = |f: fn(&ValidLine) -> String| batch.iter().map(f).collect::<Vec<_>>();
    let positions: Vec<i64> = batch.iter().map(|l| l.position).collect();
    let transaction_ids = column(|l| l.transaction_id.to_string());
    let event_ids: Vec<uuid::Uuid> = batch.iter().map(|l| l.event_id).collect();
    let aggregate_types = column(|l| l.aggregate_type.clone());
    let aggregate_ids = column(|l| l.aggregate_id.clone());
    let sequences: Vec<i64> = batch.iter().map(|l| l.sequence).collect();
    let event_types = column(|l| l.event_type.clone());
    let event_versions = column(|l| l.event_version.clone());
    let payloads = column(|l| l.payload.clone());
    let metadata = column(|l| l.metadata.clone());
    let recorded_at: Vec<_> = batch.iter().map(|l| l.recorded_at).collect();
    let rows = tx
        .query(
            &statement,
            &[
                &positions,
                &transaction_ids,
                &event_ids,
                &aggregate_types,
                &aggregate_ids,
                &sequences,
                &event_types,
                &event_versions,
                &payloads,
                &metadata,
                &recorded_at,
            ],
        )
        .await
        .map_err(|source| TransferError::Refused {
            first_line: first.line,
            last_line: last.line,
            source,
        })?;
    for row in &rows {
        let position: i64 = row.try_get(0)?;
        let prev_hash: Option<Vec<u8>> = row.try_get(1)?;
        let hash: Vec<u8> = row.try_get(2)?;
        // Positions increase within a batch.
        let Ok(index) = batch.binary_search_by_key(&position, |l| l.position) else {
            continue;
        };
        let line = &batch[index];
        let field = if hash[..] != line.hash[..] {
            "hash"
        } else if prev_hash.as_deref() != line.prev_hash.as_ref().map(|h| &h[..]) {
            "prev_hash"
        } else {
            continue;
        };
        return Err(TransferError::Altered {
            line: line.line,
            position,
            field,
        });
    }
    Ok(())
}

/// The input's lines, numbered from 1 and validated.
struct Lines<R> {
    input: R,
    number: u64,
    buffer: String,
}

impl<R: AsyncBufRead + Unpin> Lines<R> {
    fn new(input: R) -> Self {
        Self {
            input,
            number: 0,
            buffer: String::new(),
        }
    }

    /// The next event, or `None` at the end of the input. Checkpoint lines are passed
    /// over.
    async fn next(&mut self) -> Result<Option<ValidLine>, TransferError> {
        loop {
            self.buffer.clear();
            self.number += 1;
            let read = self
                .input
                .read_line(&mut self.buffer)
                .await
                .map_err(|source| TransferError::Read {
                    line: self.number,
                    source,
                })?;
            if read == 0 {
                return Ok(None);
            }
            let text = self.buffer.strip_suffix('\n').unwrap_or(&self.buffer);
            let text = text.strip_suffix('\r').unwrap_or(text);
            if text.starts_with(CHECKPOINT_LINE_START) {
                continue;
            }
            return ValidLine::parse(self.number, text).map(Some);
        }
    }
}
