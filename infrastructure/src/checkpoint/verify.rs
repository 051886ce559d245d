//! Holding the log to its signed checkpoints: every checkpoint's signature, then one walk
//! of the whole log in feed order recomputing the digest, compared at each checkpoint.

use std::fmt;

use deadpool_postgres::Pool;

use super::{CheckpointError, LogDigest, LogSigner, SignedCheckpoint};
use crate::feed::Checkpoint;

/// Rows read per round trip.
const BATCH: i64 = 10_000;

/// Every committed event's hash after a point in feed order.
const HASHES_AFTER: &str = "SELECT transaction_id::text, global_position, hash \
     FROM events WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
     ORDER BY events.transaction_id, events.global_position LIMIT $3";

/// What holding the log to its checkpoints found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    /// Checkpoints checked (the stored ones and any anchors).
    pub checked: usize,
    /// The newest checkpoint that holds.
    pub newest: Option<SignedCheckpoint>,
    /// Events after the newest checkpoint: covered by their hash chains only.
    pub events_after_newest: u64,
    /// The first checkpoint the log does not match, if any.
    pub first_break: Option<CheckpointBreak>,
}

/// A checkpoint the log, or its signature, does not hold to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointBreak {
    /// The head position the checkpoint names.
    pub position: i64,
    /// When it was signed.
    pub recorded_at: String,
    /// The newest position before it that still matched (0: none).
    pub since: i64,
    /// What is wrong.
    pub kind: CheckpointBreakKind,
}

/// How a checkpoint fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointBreakKind {
    /// Not signed by this installation's key (forged, or signed by another key).
    BadSignature {
        /// The key it names.
        key_id: String,
    },
    /// The event the checkpoint names as the head is not in the log: the log was cut.
    HeadMissing,
    /// The events up to the head are not those signed.
    Rewritten {
        /// Events the checkpoint counted.
        signed_count: u64,
        /// Events the log holds up to the head.
        found_count: u64,
    },
}

impl fmt::Display for CheckpointBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the checkpoint of position {} signed at {}: ",
            self.position, self.recorded_at
        )?;
        match &self.kind {
            CheckpointBreakKind::BadSignature { key_id } => write!(
                f,
                "its signature does not verify with this installation's key (it names `{key_id}`): it was forged or altered"
            ),
            CheckpointBreakKind::HeadMissing => write!(
                f,
                "the event at position {} is missing: the log was truncated or that event deleted (the log matched up to position {})",
                self.position, self.since
            ),
            CheckpointBreakKind::Rewritten {
                signed_count,
                found_count,
            } => write!(
                f,
                "the log up to position {} is not what was signed ({signed_count} events signed, {found_count} found): an event after position {} was deleted, altered or inserted",
                self.position, self.since
            ),
        }
    }
}

/// Checks `checkpoints` (stored ones and anchors, in any order) against the log.
pub async fn verify_checkpoints(
    pool: &Pool,
    signer: &LogSigner,
    mut checkpoints: Vec<SignedCheckpoint>,
) -> Result<CheckpointReport, CheckpointError> {
    checkpoints.sort_by_key(|c| c.checkpoint());
    checkpoints.dedup();
    let mut report = CheckpointReport {
        checked: checkpoints.len(),
        newest: None,
        events_after_newest: 0,
        first_break: None,
    };
    if let Some(forged) = checkpoints.iter().find(|c| !c.signed_by(signer)) {
        report.first_break = Some(CheckpointBreak {
            position: forged.position,
            recorded_at: forged.recorded_at.clone(),
            since: 0,
            kind: CheckpointBreakKind::BadSignature {
                key_id: forged.key_id.clone(),
            },
        });
        return Ok(report);
    }
    let mut pending = checkpoints.into_iter().peekable();
    let mut digest = LogDigest::START;
    let mut matched_up_to = 0;
    let client = pool.get().await?;
    let statement = client.prepare_cached(HASHES_AFTER).await?;
    let mut after = Checkpoint::START;
    loop {
        let rows = client
            .query(
                &statement,
                &[&after.transaction_id.to_string(), &after.position, &BATCH],
            )
            .await?;
        for row in &rows {
            let at = Checkpoint::from_row(row)?;
            let hash: Vec<u8> = row.try_get(2)?;
            // A checkpoint whose head was passed without being met lost its head.
            if let Some(missed) = pending.next_if(|c| c.checkpoint() < at) {
                report.first_break = Some(head_missing(&missed, matched_up_to));
                return Ok(report);
            }
            digest.push(&hash);
            after = at;
            while let Some(signed) = pending.next_if(|c| c.checkpoint() == at) {
                let holds = signed.event_count == digest.count()
                    && signed.digest == digest.hex()
                    && signed.head_hash == hex::encode(&hash);
                if !holds {
                    report.first_break = Some(CheckpointBreak {
                        position: signed.position,
                        recorded_at: signed.recorded_at.clone(),
                        since: matched_up_to,
                        kind: CheckpointBreakKind::Rewritten {
                            signed_count: signed.event_count,
                            found_count: digest.count(),
                        },
                    });
                    return Ok(report);
                }
                matched_up_to = signed.position;
                report.newest = Some(signed);
            }
        }
        if i64::try_from(rows.len()).unwrap_or(i64::MAX) < BATCH {
            break;
        }
    }
    if let Some(missed) = pending.next() {
        report.first_break = Some(head_missing(&missed, matched_up_to));
    }
    report.events_after_newest =
        digest.count() - report.newest.as_ref().map_or(0, |n| n.event_count);
    Ok(report)
}

fn head_missing(checkpoint: &SignedCheckpoint, since: i64) -> CheckpointBreak {
    CheckpointBreak {
        position: checkpoint.position,
        recorded_at: checkpoint.recorded_at.clone(),
        since,
        kind: CheckpointBreakKind::HeadMissing,
    }
}
