//! What Berth needs from the outside world, as traits the infrastructure implements.

use berth_domain::server::SealedSecret;
use secrecy::SecretString;
use uuid::Uuid;

/// Hashes API keys for storage and lookup: keyed, so a copy of the database alone
/// cannot test guesses.
pub trait ApiKeyHasher: Send + Sync {
    /// The hash of `key`, as stored beside its prefix (hex).
    fn hash(&self, key: &str) -> String;
}

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    /// The key that sealed it is not known (or was destroyed).
    #[error("the key `{0}` that sealed this secret is not available")]
    UnknownKey(String),
    /// The ciphertext does not open under its key and associated data: it was altered,
    /// or moved from another server.
    #[error("the secret could not be opened: it was altered or belongs elsewhere")]
    Tampered,
    /// The sealed form is not well-formed.
    #[error("malformed sealed secret: {0}")]
    Malformed(String),
    /// The owner's data key was destroyed (`berth users forget`): what it sealed can
    /// never be opened again, and nothing new is sealed for that owner.
    #[error("the data key `{key_id}` of `{owner}` was destroyed (crypto-shredded): its secrets can never be opened again")]
    Destroyed {
        /// The destroyed data key's id.
        key_id: String,
        /// Whose key it was.
        owner: String,
    },
    /// The key store could not be reached or read.
    #[error("the key store is unavailable: {0}")]
    Unavailable(String),
}

/// Seals and opens secret config values. Each secret is bound to its owner, server and
/// key as associated data, so a ciphertext moved elsewhere fails to open.
///
/// Keys may live outside the process: callers await [`SecretCipher::prepare`] for an
/// owner before sealing or opening that owner's secrets, so `seal` and `open` stay
/// synchronous.
#[async_trait::async_trait]
pub trait SecretCipher: Send + Sync {
    /// Makes `owner`'s key ready for `seal` and `open` (loading or creating it, and
    /// noticing when it was destroyed). A cipher whose keys are all in memory does
    /// nothing.
    async fn prepare(&self, _owner: &str) -> Result<(), CipherError> {
        Ok(())
    }

    /// Seals `plaintext` for `key` of `server_id`, owned by `owner`.
    fn seal(
        &self,
        owner: &str,
        server_id: Uuid,
        key: &str,
        plaintext: &SecretString,
    ) -> Result<SealedSecret, CipherError>;

    /// Opens what `seal` produced for the same owner, server and key.
    fn open(
        &self,
        owner: &str,
        server_id: Uuid,
        key: &str,
        sealed: &SealedSecret,
    ) -> Result<SecretString, CipherError>;
}
