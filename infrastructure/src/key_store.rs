//! Per-owner data keys in `owner_data_keys`: 32 random bytes each, wrapped with
//! XChaCha20-Poly1305 under the master key (associated data `owner \0 key_id`).
//! Rotating the master key re-wraps every live data key; forgetting an owner wipes
//! their wrapped key, which crypto-shreds every secret it sealed.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::XNonce;
use deadpool_postgres::Pool;
use rand::rngs::OsRng;
use rand::RngCore;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::cipher::{MasterKey, MasterKeyCipher, KEY_LEN, NONCE_LEN};
use crate::StoreError;

const SELECT_KEY: &str = "SELECT key_id, wrapped_key, wrap_nonce, master_key_id \
     FROM owner_data_keys WHERE owner = $1";
const INSERT_KEY: &str = "INSERT INTO owner_data_keys \
     (owner, key_id, wrapped_key, wrap_nonce, master_key_id) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (owner) DO NOTHING";
const SELECT_LIVE_FOR_UPDATE: &str = "SELECT owner, key_id, wrapped_key, wrap_nonce, \
     master_key_id FROM owner_data_keys WHERE destroyed_at IS NULL ORDER BY owner FOR UPDATE";
const REWRAP: &str = "UPDATE owner_data_keys \
     SET wrapped_key = $2, wrap_nonce = $3, master_key_id = $4 WHERE owner = $1";
const DESTROY: &str = "UPDATE owner_data_keys \
     SET wrapped_key = NULL, wrap_nonce = NULL, destroyed_at = now() \
     WHERE owner = $1 AND destroyed_at IS NULL RETURNING key_id";
const TOMBSTONE: &str = "INSERT INTO owner_data_keys (owner, key_id, destroyed_at) \
     VALUES ($1, $2, now()) ON CONFLICT (owner) DO NOTHING";
const SELECT_KEY_ID: &str = "SELECT key_id FROM owner_data_keys WHERE owner = $1";

/// Why a data key could not be loaded, created, re-wrapped or destroyed.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A data key is wrapped by a master key this process does not have.
    #[error("the data key of `{owner}` is wrapped by master key `{master_key_id}`, which is not loaded (is BERTH_MASTER_KEY or master.key the right one?)")]
    UnknownMasterKey {
        /// Whose data key.
        owner: String,
        /// The wrapping key's id.
        master_key_id: String,
    },
    /// The data key was destroyed.
    #[error("the data key `{key_id}` of `{owner}` was destroyed")]
    Destroyed {
        /// Whose data key.
        owner: String,
        /// The destroyed key's id.
        key_id: String,
    },
    /// A wrapped data key does not unwrap: altered, or moved to another owner.
    #[error("the wrapped data key of `{0}` does not open: it was altered or belongs elsewhere")]
    Tampered(String),
}

impl From<tokio_postgres::Error> for KeyStoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for KeyStoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Store(e.into())
    }
}

/// An unwrapped data key, wiped from memory when dropped and never printed.
#[derive(Clone)]
pub struct DataKey {
    id: String,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl DataKey {
    fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(bytes.as_mut_slice());
        Self {
            id: format!("dk-{}", Uuid::new_v4()),
            bytes,
        }
    }

    /// The key's id, `dk-<uuid>`, stored beside every ciphertext it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// An owner's data key as the table holds it.
#[derive(Debug, Clone)]
pub enum OwnerKey {
    /// Usable.
    Live(DataKey),
    /// Destroyed by `berth users forget`.
    Destroyed {
        /// The destroyed key's id.
        key_id: String,
    },
}

/// `owner \0 key_id`: what a wrapped data key is bound to.
fn wrap_aad(owner: &str, key_id: &str) -> Vec<u8> {
    [owner.as_bytes(), &[0], key_id.as_bytes()].concat()
}

fn wrap(master: &MasterKey, owner: &str, key: &DataKey) -> (Vec<u8>, Vec<u8>) {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let aad = wrap_aad(owner, &key.id);
    let wrapped = master
        .aead()
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: key.bytes.as_slice(),
                aad: &aad,
            },
        )
        .unwrap_or_else(|_| unreachable!("a 32-byte message is within the cipher's limit"));
    (wrapped, nonce.to_vec())
}

fn unwrap(
    masters: &MasterKeyCipher,
    owner: &str,
    key_id: &str,
    wrapped: &[u8],
    nonce: &[u8],
    master_key_id: &str,
) -> Result<DataKey, KeyStoreError> {
    let master = masters
        .key(master_key_id)
        .ok_or_else(|| KeyStoreError::UnknownMasterKey {
            owner: owner.to_owned(),
            master_key_id: master_key_id.to_owned(),
        })?;
    if nonce.len() != NONCE_LEN {
        return Err(KeyStoreError::Tampered(owner.to_owned()));
    }
    let aad = wrap_aad(owner, key_id);
    let plain = Zeroizing::new(
        master
            .aead()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: wrapped,
                    aad: &aad,
                },
            )
            .map_err(|_| KeyStoreError::Tampered(owner.to_owned()))?,
    );
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    if plain.len() != KEY_LEN {
        return Err(KeyStoreError::Tampered(owner.to_owned()));
    }
    bytes.copy_from_slice(&plain);
    Ok(DataKey {
        id: key_id.to_owned(),
        bytes,
    })
}

fn owner_key_from_row(
    masters: &MasterKeyCipher,
    owner: &str,
    row: &tokio_postgres::Row,
) -> Result<OwnerKey, KeyStoreError> {
    let key_id: String = row.get("key_id");
    let wrapped: Option<Vec<u8>> = row.get("wrapped_key");
    let nonce: Option<Vec<u8>> = row.get("wrap_nonce");
    let master_key_id: Option<String> = row.get("master_key_id");
    match (wrapped, nonce, master_key_id) {
        (Some(wrapped), Some(nonce), Some(master_key_id)) => {
            let wrapped = Zeroizing::new(wrapped);
            unwrap(masters, owner, &key_id, &wrapped, &nonce, &master_key_id).map(OwnerKey::Live)
        }
        _ => Ok(OwnerKey::Destroyed { key_id }),
    }
}

/// `owner`'s data key, created (wrapped under `masters`' current key) if they have none.
pub async fn load_or_create(
    pool: &Pool,
    masters: &MasterKeyCipher,
    owner: &str,
) -> Result<OwnerKey, KeyStoreError> {
    let client = pool.get().await?;
    let select = client.prepare_cached(SELECT_KEY).await?;
    if let Some(row) = client.query_opt(&select, &[&owner]).await? {
        return owner_key_from_row(masters, owner, &row);
    }
    let current = masters
        .key(masters.current_key_id())
        .unwrap_or_else(|| unreachable!("the current key is always known"));
    let key = DataKey::generate();
    let (wrapped, nonce) = wrap(current, owner, &key);
    let insert = client.prepare_cached(INSERT_KEY).await?;
    let inserted = client
        .execute(&insert, &[&owner, &key.id, &wrapped, &nonce, &current.id()])
        .await?;
    if inserted == 1 {
        tracing::info!(owner, key_id = %key.id, "created a data key");
        return Ok(OwnerKey::Live(key));
    }
    // Another process created one first: use theirs.
    let row = client.query_one(&select, &[&owner]).await?;
    owner_key_from_row(masters, owner, &row)
}

/// Re-wraps every live data key under `new` in one transaction, unwrapping each with
/// the key of `old` it names. Returns how many keys were re-wrapped. Events are not
/// touched: data keys keep their ids and bytes.
pub async fn rewrap_all(
    pool: &Pool,
    old: &MasterKeyCipher,
    new: &MasterKey,
) -> Result<usize, KeyStoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let rows = tx.query(SELECT_LIVE_FOR_UPDATE, &[]).await?;
    let rewrap = tx.prepare(REWRAP).await?;
    for row in &rows {
        let owner: String = row.get("owner");
        let key = match owner_key_from_row(old, &owner, row)? {
            OwnerKey::Live(key) => key,
            OwnerKey::Destroyed { .. } => continue,
        };
        let (wrapped, nonce) = wrap(new, &owner, &key);
        tx.execute(&rewrap, &[&owner, &wrapped, &nonce, &new.id()])
            .await?;
    }
    tx.commit().await?;
    Ok(rows.len())
}

/// What `forget` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forgotten {
    /// The owner's data key `key_id` was destroyed now.
    Destroyed(String),
    /// It had already been destroyed.
    AlreadyDestroyed(String),
    /// The owner had no data key; a destroyed one `key_id` was recorded so none is
    /// ever created for them.
    NeverHadOne(String),
}

/// Destroys `owner`'s data key: the wrapped key is overwritten with NULL, so every
/// secret it sealed can never be opened again.
pub async fn forget(pool: &Pool, owner: &str) -> Result<Forgotten, KeyStoreError> {
    let client = pool.get().await?;
    if let Some(row) = client.query_opt(DESTROY, &[&owner]).await? {
        return Ok(Forgotten::Destroyed(row.get(0)));
    }
    let tombstone = format!("dk-{}", Uuid::new_v4());
    if client.execute(TOMBSTONE, &[&owner, &tombstone]).await? == 1 {
        return Ok(Forgotten::NeverHadOne(tombstone));
    }
    let row = client.query_one(SELECT_KEY_ID, &[&owner]).await?;
    Ok(Forgotten::AlreadyDestroyed(row.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_key_unwraps_only_for_its_owner_and_id() {
        let master = MasterKey::generate();
        let masters = MasterKeyCipher::new(master.clone());
        let key = DataKey::generate();
        let (wrapped, nonce) = wrap(&master, "user:a", &key);
        let back = unwrap(&masters, "user:a", &key.id, &wrapped, &nonce, master.id()).unwrap();
        assert_eq!(back.bytes(), key.bytes());
        assert!(matches!(
            unwrap(&masters, "user:b", &key.id, &wrapped, &nonce, master.id()),
            Err(KeyStoreError::Tampered(_))
        ));
        assert!(matches!(
            unwrap(
                &masters,
                "user:a",
                "dk-other",
                &wrapped,
                &nonce,
                master.id()
            ),
            Err(KeyStoreError::Tampered(_))
        ));
        assert!(matches!(
            unwrap(&masters, "user:a", &key.id, &wrapped, &nonce, "mk-unknown"),
            Err(KeyStoreError::UnknownMasterKey { .. })
        ));
    }

    #[test]
    fn debug_of_a_data_key_prints_no_key_bytes() {
        let key = DataKey {
            id: "dk-x".into(),
            bytes: Zeroizing::new([7u8; KEY_LEN]),
        };
        let shown = format!("{key:?} {:?}", OwnerKey::Live(key.clone()));
        assert!(shown.contains("dk-x"));
        assert!(!shown.contains("7, 7"));
        assert!(!shown.contains("bytes"));
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; KEY_LEN]);
        assert!(!shown.contains(&b64));
        assert!(!shown.contains(&hex::encode([7u8; KEY_LEN])));
    }
}
