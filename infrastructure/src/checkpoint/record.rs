//! One signed checkpoint, as stored, exported and kept by a person as an anchor.

use serde::{Deserialize, Serialize};

use super::LogSigner;
use crate::feed::Checkpoint;

/// The log as it stood at a point: its head in feed order, the events up to it, the
/// digest over their hashes, when, and the signature over all of that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    /// The head's transaction id (`xid8`): with `position`, its place in feed order.
    pub transaction_id: u64,
    /// The head's global position.
    pub position: i64,
    /// How many events the log held up to and including the head.
    pub event_count: u64,
    /// The head event's stored hash, hex.
    pub head_hash: String,
    /// [`super::LogDigest`] over every event up to the head, hex.
    pub digest: String,
    /// When it was signed (RFC 3339, UTC).
    pub recorded_at: String,
    /// Which key signed it (`sk-…`).
    pub key_id: String,
    /// The Ed25519 signature of [`SignedCheckpoint::signed_bytes`], base64.
    pub signature: String,
}

impl SignedCheckpoint {
    /// Its place in feed order.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            transaction_id: self.transaction_id,
            position: self.position,
        }
    }

    /// What the signature covers: every field but the signature, one per line.
    pub fn signed_bytes(&self) -> Vec<u8> {
        format!(
            "berth.checkpoint.v1\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.transaction_id,
            self.position,
            self.event_count,
            self.head_hash,
            self.digest,
            self.recorded_at,
            self.key_id
        )
        .into_bytes()
    }

    /// Signs the other fields with `signer` (setting `key_id` and `signature`).
    pub fn sign(mut self, signer: &LogSigner) -> Self {
        self.key_id = signer.id().to_owned();
        self.signature = signer.sign(&self.signed_bytes());
        self
    }

    /// Whether `signer` made this signature over these fields.
    pub fn signed_by(&self, signer: &LogSigner) -> bool {
        self.key_id == signer.id() && signer.verifies(&self.signed_bytes(), &self.signature)
    }
}
