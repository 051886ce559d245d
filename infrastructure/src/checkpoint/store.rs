//! Recording checkpoints: one at a time (an advisory lock serialises every process that
//! records them), each continuing the digest of the one before.

use std::path::Path;

use chrono::{SecondsFormat, Utc};
use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::Row;

use super::{CheckpointError, LogDigest, LogSigner, SignedCheckpoint};
use crate::feed::{parse_xid, Checkpoint};

/// The newest checkpoint this Berth recorded, kept in its data directory too: a
/// checkpoint the database cannot take back.
pub const LATEST_CHECKPOINT_FILE: &str = "checkpoint.latest.json";

/// Rows read per round trip.
const BATCH: i64 = 10_000;

/// Serialises recorders across processes: "berth.checkpoints" as a number.
const LOCK_KEY: i64 = 0x6265_7274_685f_636b;

/// Event hashes after a point in feed order, settled ones only: below the oldest open
/// transaction nothing can still appear before them.
pub(super) const SETTLED_HASHES_AFTER: &str = "SELECT transaction_id::text, global_position, hash \
     FROM events WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
       AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY events.transaction_id, events.global_position LIMIT $3";

const LATEST: &str = "SELECT transaction_id::text, position, event_count, head_hash, digest, \
     recorded_at, key_id, signature FROM log_checkpoints \
     ORDER BY log_checkpoints.transaction_id DESC, position DESC LIMIT 1";

const ALL: &str = "SELECT transaction_id::text, position, event_count, head_hash, digest, \
     recorded_at, key_id, signature FROM log_checkpoints \
     ORDER BY log_checkpoints.transaction_id, position";

const INSERT: &str = "INSERT INTO log_checkpoints (transaction_id, position, event_count, \
     head_hash, digest, recorded_at, key_id, signature) \
     VALUES ($1::text::xid8, $2, $3, $4, $5, $6, $7, $8)";

/// Signs and records a checkpoint at the log's settled head; `None` when nothing was
/// appended since the last one.
pub async fn record_checkpoint(
    pool: &Pool,
    signer: &LogSigner,
) -> Result<Option<SignedCheckpoint>, CheckpointError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    let last = match tx.query_opt(LATEST, &[]).await? {
        Some(row) => Some(from_row(&row)?),
        None => None,
    };
    // Continuing from a checkpoint someone else wrote would sign their digest.
    if let Some(last) = last.as_ref().filter(|last| !last.signed_by(signer)) {
        return Err(CheckpointError::Malformed(format!(
            "the newest stored checkpoint (position {}) is not signed by this installation's \
             key; nothing more is signed until `berth verify` has been looked at",
            last.position
        )));
    }
    let (mut digest, mut after) = match &last {
        Some(cp) => (
            LogDigest::resume(&cp.digest, cp.event_count)
                .ok_or_else(|| CheckpointError::Malformed(format!("digest `{}`", cp.digest)))?,
            cp.checkpoint(),
        ),
        None => (LogDigest::START, Checkpoint::START),
    };
    let statement = tx.prepare_cached(SETTLED_HASHES_AFTER).await?;
    let mut head_hash = None;
    loop {
        let rows = tx
            .query(
                &statement,
                &[&after.transaction_id.to_string(), &after.position, &BATCH],
            )
            .await?;
        for row in &rows {
            let hash: Vec<u8> = row.try_get(2)?;
            digest.push(&hash);
            after = Checkpoint::from_row(row)?;
            head_hash = Some(hash);
        }
        if i64::try_from(rows.len()).unwrap_or(i64::MAX) < BATCH {
            break;
        }
    }
    let Some(head_hash) = head_hash else {
        return Ok(None);
    };
    let checkpoint = SignedCheckpoint {
        transaction_id: after.transaction_id,
        position: after.position,
        event_count: digest.count(),
        head_hash: hex::encode(head_hash),
        digest: digest.hex(),
        recorded_at: Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        key_id: String::new(),
        signature: String::new(),
    }
    .sign(signer);
    tx.execute(
        INSERT,
        &[
            &checkpoint.transaction_id.to_string(),
            &checkpoint.position,
            &i64::try_from(checkpoint.event_count).unwrap_or(i64::MAX),
            &checkpoint.head_hash,
            &checkpoint.digest,
            &checkpoint.recorded_at,
            &checkpoint.key_id,
            &checkpoint.signature,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(checkpoint))
}

/// Whether the table holds exactly `checkpoint` (one kept elsewhere must still be there:
/// rows are never changed nor deleted).
pub async fn holds<C: GenericClient>(
    client: &C,
    checkpoint: &SignedCheckpoint,
) -> Result<bool, CheckpointError> {
    let row = client
        .query_opt(
            "SELECT transaction_id::text, position, event_count, head_hash, digest, \
             recorded_at, key_id, signature FROM log_checkpoints \
             WHERE transaction_id = $1::text::xid8 AND position = $2",
            &[&checkpoint.transaction_id.to_string(), &checkpoint.position],
        )
        .await?;
    Ok(match row {
        Some(row) => from_row(&row)? == *checkpoint,
        None => false,
    })
}

/// Every recorded checkpoint, in feed order.
pub async fn checkpoints<C: GenericClient>(
    client: &C,
) -> Result<Vec<SignedCheckpoint>, CheckpointError> {
    let rows = client.query(ALL, &[]).await?;
    rows.iter().map(from_row).collect()
}

/// Replaces `path` with `checkpoint` as JSON (mode 0600), atomically.
pub fn keep(path: &Path, checkpoint: &SignedCheckpoint) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    serde_json::to_writer_pretty(&mut file, checkpoint)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads a checkpoint kept with [`keep`] (or saved by a person from an export or
/// `berth checkpoint`).
pub fn read_kept(path: &Path) -> Result<SignedCheckpoint, CheckpointError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CheckpointError::Malformed(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| CheckpointError::Malformed(format!("{}: {e}", path.display())))
}

fn from_row(row: &Row) -> Result<SignedCheckpoint, CheckpointError> {
    let count: i64 = row.try_get(2)?;
    Ok(SignedCheckpoint {
        transaction_id: parse_xid(&row.try_get::<_, String>(0)?)?,
        position: row.try_get(1)?,
        event_count: u64::try_from(count)
            .map_err(|_| CheckpointError::Malformed(format!("event count {count}")))?,
        head_hash: row.try_get(3)?,
        digest: row.try_get(4)?,
        recorded_at: row.try_get(5)?,
        key_id: row.try_get(6)?,
        signature: row.try_get(7)?,
    })
}
