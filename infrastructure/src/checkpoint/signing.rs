//! The Ed25519 key that signs checkpoints: `<data_dir>/signing.key` (32 random bytes,
//! mode 0600, created on first use, beside the master key) or `BERTH_SIGNING_KEY`
//! (base64). It never enters the database; every replica of one installation needs the
//! same key.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::CheckpointError;
use crate::key_file;

/// The environment variable that may hold the signing key (base64 of 32 bytes).
pub const SIGNING_KEY_ENV: &str = "BERTH_SIGNING_KEY";

/// The signing key's file in the data directory.
pub const SIGNING_KEY_FILE: &str = "signing.key";

/// Signs and checks checkpoints. `Debug` shows the key id only.
#[derive(Clone)]
pub struct LogSigner {
    key: SigningKey,
    id: String,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSigner").field("id", &self.id).finish()
    }
}

impl LogSigner {
    /// The key from `BERTH_SIGNING_KEY`, else from `<data_dir>/signing.key` (created
    /// when absent).
    pub fn from_env_or_file(data_dir: &Path) -> Result<Self, CheckpointError> {
        match std::env::var(SIGNING_KEY_ENV) {
            Ok(value) => {
                let decoded = Zeroizing::new(BASE64.decode(value.trim()).map_err(|e| {
                    CheckpointError::Key(format!("{SIGNING_KEY_ENV} is not base64: {e}"))
                })?);
                let seed: [u8; 32] = decoded.as_slice().try_into().map_err(|_| {
                    CheckpointError::Key(format!(
                        "{SIGNING_KEY_ENV} decodes to {} bytes, not 32",
                        decoded.len()
                    ))
                })?;
                Ok(Self::from_seed(&seed))
            }
            Err(_) => Self::from_file(&data_dir.join(SIGNING_KEY_FILE)),
        }
    }

    /// The key this installation signs with, without creating one: `None` when neither
    /// `BERTH_SIGNING_KEY` nor `<data_dir>/signing.key` exists.
    pub fn existing(data_dir: &Path) -> Result<Option<Self>, CheckpointError> {
        let file = data_dir.join(SIGNING_KEY_FILE);
        if std::env::var_os(SIGNING_KEY_ENV).is_none() && !file.exists() {
            return Ok(None);
        }
        Self::from_env_or_file(data_dir).map(Some)
    }

    /// The key in `path`, created when absent.
    pub fn from_file(path: &Path) -> Result<Self, CheckpointError> {
        let (seed, created) = key_file::load_or_create(path)
            .map_err(|e| CheckpointError::Key(format!("{}: {e}", path.display())))?;
        let signer = Self::from_seed(&seed);
        if created {
            tracing::info!(path = %path.display(), key_id = %signer.id, "created the log signing key");
        }
        Ok(signer)
    }

    /// A signer with the key `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let id = key_id(&key.verifying_key());
        Self { key, id }
    }

    /// `sk-` and the first 16 hex digits of SHA-256 of the public key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The public key, as hex: what an auditor needs to check checkpoints elsewhere.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// The signature of `message`, base64.
    pub fn sign(&self, message: &[u8]) -> String {
        BASE64.encode(self.key.sign(message).to_bytes())
    }

    /// Whether `signature` (base64) is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Ok(bytes) = BASE64.decode(signature) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&bytes) else {
            return false;
        };
        self.key.verifying_key().verify(message, &signature).is_ok()
    }
}

fn key_id(public: &VerifyingKey) -> String {
    let digest = Sha256::digest(public.as_bytes());
    format!("sk-{}", hex::encode(&digest[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_for_its_message_and_key_only() {
        let signer = LogSigner::from_seed(&[7; 32]);
        let other = LogSigner::from_seed(&[8; 32]);
        let signature = signer.sign(b"head 42");
        assert!(signer.verifies(b"head 42", &signature));
        assert!(!signer.verifies(b"head 43", &signature));
        assert!(!other.verifies(b"head 42", &signature));
        assert!(!signer.verifies(b"head 42", "not base64!"));
        assert_ne!(signer.id(), other.id());
        assert!(format!("{signer:?}").contains(signer.id()));
        assert!(!format!("{signer:?}").contains(&hex::encode([7u8; 32])));
    }

    #[test]
    fn the_key_file_is_created_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join(SIGNING_KEY_FILE);
        let first = LogSigner::from_file(&path).expect("created");
        let again = LogSigner::from_file(&path).expect("loaded");
        assert_eq!(first.id(), again.id());
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
