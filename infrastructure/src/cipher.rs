//! The secret cipher: XChaCha20-Poly1305 under a 32-byte master key, each secret bound
//! to its owner, server and key name as associated data.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use berth_application::ports::{CipherError, SecretCipher};
use berth_domain::server::SealedSecret;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::rngs::OsRng;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::key_file;

/// The environment variable holding the master key, base64 of 32 bytes.
pub const MASTER_KEY_ENV: &str = "BERTH_MASTER_KEY";
/// The file in the data directory holding the master key when the environment does not.
pub const MASTER_KEY_FILE: &str = "master.key";

pub(crate) const KEY_LEN: usize = 32;
pub(crate) const NONCE_LEN: usize = 24;

/// Why the master key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    /// `BERTH_MASTER_KEY` is set but is not base64 of exactly 32 bytes.
    #[error("{MASTER_KEY_ENV} must be the base64 encoding of exactly 32 bytes ({0}); generate one with `head -c 32 /dev/urandom | base64`")]
    MalformedEnv(String),
    /// The key file exists but does not hold exactly 32 bytes.
    #[error("the master key file {path} holds {len} bytes, not 32: restore the right file or, if no secret was ever sealed with it, remove it so a new key is created")]
    MalformedFile {
        /// The file.
        path: PathBuf,
        /// How many bytes it holds.
        len: u64,
    },
    /// Reading or creating the key file failed.
    #[error("master key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// A 32-byte master key, wiped from memory when dropped and never printed.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    id: String,
}

impl MasterKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let digest = Sha256::digest(bytes.as_slice());
        let id = format!("mk-{}", hex::encode(&digest[..8]));
        Self { bytes, id }
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(bytes.as_mut_slice());
        Self::from_bytes(*bytes)
    }

    /// Decodes the base64 form used by `BERTH_MASTER_KEY`.
    pub fn from_base64(encoded: &str) -> Result<Self, MasterKeyError> {
        let decoded = Zeroizing::new(
            BASE64
                .decode(encoded.trim())
                .map_err(|e| MasterKeyError::MalformedEnv(format!("not base64: {e}")))?,
        );
        let bytes: [u8; KEY_LEN] = decoded.as_slice().try_into().map_err(|_| {
            MasterKeyError::MalformedEnv(format!("it decodes to {} bytes", decoded.len()))
        })?;
        Ok(Self::from_bytes(bytes))
    }

    /// Loads the key from `BERTH_MASTER_KEY` if set, else from `<data_dir>/master.key`,
    /// creating that file (32 random bytes, mode 0600) when it does not exist.
    pub fn from_env_or_file(data_dir: &Path) -> Result<Self, MasterKeyError> {
        match std::env::var(MASTER_KEY_ENV) {
            Ok(value) => {
                let value = Zeroizing::new(value);
                tracing::debug!("master key taken from {MASTER_KEY_ENV}");
                Self::from_base64(&value)
            }
            Err(std::env::VarError::NotUnicode(_)) => Err(MasterKeyError::MalformedEnv(
                "it is not valid UTF-8".to_owned(),
            )),
            Err(std::env::VarError::NotPresent) => Self::from_file(&data_dir.join(MASTER_KEY_FILE)),
        }
    }

    /// Loads the key from `path`, creating it (32 random bytes, mode 0600) if absent.
    pub fn from_file(path: &Path) -> Result<Self, MasterKeyError> {
        let (bytes, created) = key_file::load_or_create(path).map_err(|e| match e {
            key_file::KeyFileError::WrongLength(len) => MasterKeyError::MalformedFile {
                path: path.to_owned(),
                len,
            },
            key_file::KeyFileError::Io(source) => MasterKeyError::Io {
                path: path.to_owned(),
                source,
            },
        })?;
        let key = Self::from_bytes(*bytes);
        if created {
            tracing::info!(path = %path.display(), key_id = %key.id, "created a new master key");
        }
        Ok(key)
    }

    /// Writes the key to a new file at `path` (mode 0600, synced); refuses to
    /// overwrite an existing file.
    pub fn write_new_file(&self, path: &Path) -> io::Result<()> {
        key_file::write_new(path, self.bytes.as_slice())
    }

    /// The retired master keys kept in `data_dir` as `master.key.retired-<id>` by
    /// `berth keys rotate-master`, still needed to open secrets sealed directly under
    /// them before data keys existed.
    pub fn load_retired(data_dir: &Path) -> Result<Vec<Self>, MasterKeyError> {
        let entries = match fs::read_dir(data_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(MasterKeyError::Io {
                    path: data_dir.to_owned(),
                    source,
                })
            }
        };
        let prefix = format!("{MASTER_KEY_FILE}.retired-");
        let mut keys = Vec::new();
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                keys.push(Self::from_file(&entry.path())?);
            }
        }
        Ok(keys)
    }

    /// The key's public id: `mk-` and the hex of the first 8 bytes of its SHA-256.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key in `BERTH_MASTER_KEY` form. Handle with care: this is the secret.
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(BASE64.encode(self.bytes.as_slice()))
    }

    pub(crate) fn aead(&self) -> XChaCha20Poly1305 {
        aead(&self.bytes)
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Seals with the current master key; opens with it or with any retired key it was
/// given, chosen by the sealed secret's key id.
#[derive(Clone, Debug)]
pub struct MasterKeyCipher {
    current: MasterKey,
    retired: Vec<MasterKey>,
}

impl MasterKeyCipher {
    /// A cipher sealing and opening with `key`.
    pub fn new(key: MasterKey) -> Self {
        Self {
            current: key,
            retired: Vec::new(),
        }
    }

    /// Also opens secrets sealed by `key`, an earlier master key, during a rotation.
    pub fn with_retired(mut self, key: MasterKey) -> Self {
        self.retired.push(key);
        self
    }

    /// The id of the key new secrets are sealed with.
    pub fn current_key_id(&self) -> &str {
        self.current.id()
    }

    /// The master key (current or retired) whose id is `id`.
    pub fn key(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.retired)
            .find(|k| k.id == id)
    }
}

/// The AEAD under raw key bytes.
pub(crate) fn aead(key: &[u8; KEY_LEN]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(Key::from_slice(key.as_slice()))
}

/// Seals `plaintext` under `cipher` with a fresh random nonce, bound to `aad`.
pub(crate) fn seal_with(
    cipher: &XChaCha20Poly1305,
    key_id: &str,
    aad: &[u8],
    plaintext: &SecretString,
) -> Result<SealedSecret, CipherError> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext.expose_secret().as_bytes(),
                aad,
            },
        )
        // Encryption only fails for messages beyond the cipher's length limit.
        .map_err(|_| CipherError::Malformed("the secret is too long to seal".to_owned()))?;
    Ok(SealedSecret {
        key_id: key_id.to_owned(),
        nonce: BASE64.encode(nonce),
        ciphertext: BASE64.encode(ciphertext),
    })
}

/// Opens what [`seal_with`] produced under the same key and `aad`.
pub(crate) fn open_with(
    cipher: &XChaCha20Poly1305,
    aad: &[u8],
    sealed: &SealedSecret,
) -> Result<SecretString, CipherError> {
    let nonce = BASE64
        .decode(&sealed.nonce)
        .map_err(|e| CipherError::Malformed(format!("nonce is not base64: {e}")))?;
    if nonce.len() != NONCE_LEN {
        return Err(CipherError::Malformed(format!(
            "nonce has {} bytes, expected {NONCE_LEN}",
            nonce.len()
        )));
    }
    let ciphertext = BASE64
        .decode(&sealed.ciphertext)
        .map_err(|e| CipherError::Malformed(format!("ciphertext is not base64: {e}")))?;
    let plaintext = Zeroizing::new(
        cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad,
                },
            )
            .map_err(|_| CipherError::Tampered)?,
    );
    let text = std::str::from_utf8(&plaintext)
        .map_err(|_| CipherError::Malformed("the opened secret is not UTF-8".to_owned()))?;
    Ok(SecretString::from(text))
}

/// `owner \0 server_id \0 key`: what a ciphertext is bound to.
pub(crate) fn associated_data(owner: &str, server_id: Uuid, key: &str) -> Vec<u8> {
    let server_id = server_id.to_string();
    let mut aad = Vec::with_capacity(owner.len() + server_id.len() + key.len() + 2);
    aad.extend_from_slice(owner.as_bytes());
    aad.push(0);
    aad.extend_from_slice(server_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key.as_bytes());
    aad
}

impl SecretCipher for MasterKeyCipher {
    fn seal(
        &self,
        owner: &str,
        server_id: Uuid,
        key: &str,
        plaintext: &SecretString,
    ) -> Result<SealedSecret, CipherError> {
        let aad = associated_data(owner, server_id, key);
        seal_with(&self.current.aead(), &self.current.id, &aad, plaintext)
    }

    fn open(
        &self,
        owner: &str,
        server_id: Uuid,
        key: &str,
        sealed: &SealedSecret,
    ) -> Result<SecretString, CipherError> {
        let master = self
            .key(&sealed.key_id)
            .ok_or_else(|| CipherError::UnknownKey(sealed.key_id.clone()))?;
        let aad = associated_data(owner, server_id, key);
        open_with(&master.aead(), &aad, sealed)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn cipher() -> MasterKeyCipher {
        MasterKeyCipher::new(MasterKey::generate())
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s)
    }

    #[test]
    fn round_trip() {
        let c = cipher();
        let id = Uuid::new_v4();
        let sealed = c
            .seal("alice", id, "API_TOKEN", &secret("hunter2"))
            .unwrap();
        assert_eq!(sealed.key_id, c.current_key_id());
        let opened = c.open("alice", id, "API_TOKEN", &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "hunter2");
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let c = cipher();
        let id = Uuid::new_v4();
        let a = c.seal("alice", id, "K", &secret("same")).unwrap();
        let b = c.seal("alice", id, "K", &secret("same")).unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn moved_to_another_server_key_or_owner_is_tampered() {
        let c = cipher();
        let id = Uuid::new_v4();
        let sealed = c
            .seal("alice", id, "API_TOKEN", &secret("hunter2"))
            .unwrap();
        let other_server = c.open("alice", Uuid::new_v4(), "API_TOKEN", &sealed);
        let other_key = c.open("alice", id, "OTHER", &sealed);
        let other_owner = c.open("bob", id, "API_TOKEN", &sealed);
        for result in [other_server, other_key, other_owner] {
            assert!(matches!(result, Err(CipherError::Tampered)), "{result:?}");
        }
    }

    #[test]
    fn flipped_ciphertext_byte_is_tampered() {
        let c = cipher();
        let id = Uuid::new_v4();
        let mut sealed = c.seal("alice", id, "K", &secret("hunter2")).unwrap();
        let mut bytes = BASE64.decode(&sealed.ciphertext).unwrap();
        bytes[0] ^= 0x01;
        sealed.ciphertext = BASE64.encode(bytes);
        assert!(matches!(
            c.open("alice", id, "K", &sealed),
            Err(CipherError::Tampered)
        ));
    }

    #[test]
    fn unknown_key_id_is_reported() {
        let id = Uuid::new_v4();
        let sealed = cipher().seal("alice", id, "K", &secret("x")).unwrap();
        match cipher().open("alice", id, "K", &sealed) {
            Err(CipherError::UnknownKey(k)) => assert_eq!(k, sealed.key_id),
            other => panic!("expected UnknownKey, got {other:?}"),
        }
    }

    #[test]
    fn retired_key_still_opens() {
        let old = MasterKey::generate();
        let id = Uuid::new_v4();
        let sealed = MasterKeyCipher::new(old.clone())
            .seal("alice", id, "K", &secret("x"))
            .unwrap();
        let rotated = MasterKeyCipher::new(MasterKey::generate()).with_retired(old);
        let opened = rotated.open("alice", id, "K", &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "x");
    }

    #[test]
    fn ciphertext_does_not_contain_plaintext() {
        let c = cipher();
        let plaintext = "a-very-recognisable-secret-value";
        let sealed = c
            .seal("alice", Uuid::new_v4(), "K", &secret(plaintext))
            .unwrap();
        let raw = BASE64.decode(&sealed.ciphertext).unwrap();
        assert!(!raw
            .windows(plaintext.len())
            .any(|w| w == plaintext.as_bytes()));
        assert!(!sealed.ciphertext.contains(plaintext));
    }

    #[test]
    fn key_id_is_mk_and_16_hex_digits_and_debug_hides_the_key() {
        let key = MasterKey::from_bytes([7u8; 32]);
        assert!(key.id().starts_with("mk-"));
        assert_eq!(key.id().len(), 3 + 16);
        let shown = format!("{key:?} {:?}", MasterKeyCipher::new(key.clone()));
        assert!(shown.contains(key.id()));
        assert!(!shown.contains("7, 7"));
        assert!(!shown.contains(&BASE64.encode([7u8; 32])));
    }

    #[test]
    fn base64_form_round_trips_and_bad_lengths_are_refused() {
        let key = MasterKey::generate();
        let again = MasterKey::from_base64(key.to_base64().expose_secret()).unwrap();
        assert_eq!(again.id(), key.id());
        assert!(matches!(
            MasterKey::from_base64(&BASE64.encode([1u8; 16])),
            Err(MasterKeyError::MalformedEnv(_))
        ));
        assert!(matches!(
            MasterKey::from_base64("not base64!"),
            Err(MasterKeyError::MalformedEnv(_))
        ));
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        let first = MasterKey::from_file(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        let second = MasterKey::from_file(&path).unwrap();
        assert_eq!(first.id(), second.id());
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary key file left behind");
    }

    #[test]
    fn key_file_of_wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        fs::write(&path, [0u8; 31]).unwrap();
        assert!(matches!(
            MasterKey::from_file(&path),
            Err(MasterKeyError::MalformedFile { len: 31, .. })
        ));
    }
}
