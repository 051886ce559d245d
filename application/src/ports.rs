//! What Berth needs from the outside world, as traits the infrastructure implements.

use berth_domain::server::SealedSecret;
use secrecy::SecretString;
use uuid::Uuid;

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
}

/// Seals and opens secret config values. Each secret is bound to its owner, server and
/// key as associated data, so a ciphertext moved elsewhere fails to open.
pub trait SecretCipher: Send + Sync {
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
