//! The digest a checkpoint signs: chained over every event's stored hash in feed order,
//! so it changes if any event up to the checkpoint is removed, altered, added or moved.

use sha2::{Digest, Sha256};

/// A running digest of the log, in feed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogDigest {
    value: [u8; 32],
    count: u64,
}

impl Default for LogDigest {
    fn default() -> Self {
        Self::START
    }
}

impl LogDigest {
    /// The digest of an empty log.
    pub const START: Self = Self {
        value: [0; 32],
        count: 0,
    };

    /// Resumes from a checkpoint's digest and event count.
    pub fn resume(hex_value: &str, count: u64) -> Option<Self> {
        let bytes = hex::decode(hex_value).ok()?;
        Some(Self {
            value: bytes.try_into().ok()?,
            count,
        })
    }

    /// Takes in the next event's stored hash.
    pub fn push(&mut self, event_hash: &[u8]) {
        let mut hasher = Sha256::new();
        hasher.update(b"berth.log.v1\0");
        hasher.update(self.value);
        hasher.update(event_hash);
        self.value = hasher.finalize().into();
        self.count += 1;
    }

    /// The digest, as hex.
    pub fn hex(&self) -> String {
        hex::encode(self.value)
    }

    /// Events taken in.
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(hashes: &[&[u8]]) -> LogDigest {
        let mut digest = LogDigest::START;
        for hash in hashes {
            digest.push(hash);
        }
        digest
    }

    #[test]
    fn removing_changing_or_reordering_an_event_changes_the_digest() {
        let whole = digest_of(&[b"a", b"b", b"c"]);
        assert_ne!(whole, digest_of(&[b"a", b"b"]));
        assert_ne!(whole.hex(), digest_of(&[b"a", b"c"]).hex());
        assert_ne!(whole.hex(), digest_of(&[b"a", b"x", b"c"]).hex());
        assert_ne!(whole.hex(), digest_of(&[b"b", b"a", b"c"]).hex());
        assert_eq!(whole, digest_of(&[b"a", b"b", b"c"]));
        let mut resumed = LogDigest::resume(&digest_of(&[b"a", b"b"]).hex(), 2).expect("hex");
        resumed.push(b"c");
        assert_eq!(resumed, whole);
    }
}
