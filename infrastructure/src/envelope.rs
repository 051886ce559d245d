//! Envelope encryption: each owner's secrets sealed under their own data key (kept in
//! `owner_data_keys`, wrapped by the master key), so rotating the master key re-wraps
//! a few keys instead of re-sealing events, and destroying one data key crypto-shreds
//! exactly that owner's secrets.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use berth_application::ports::{CipherError, SecretCipher};
use berth_domain::server::SealedSecret;
use deadpool_postgres::Pool;
use secrecy::SecretString;
use uuid::Uuid;

use crate::cipher::{aead, associated_data, open_with, seal_with, MasterKeyCipher};
use crate::key_store::{self, KeyStoreError, OwnerKey};

/// The prefix of data key ids; sealed secrets with any other key id were sealed
/// directly under a master key, before data keys existed.
pub const DATA_KEY_PREFIX: &str = "dk-";

/// Seals under the owner's data key; opens `dk-` secrets with the owner's data key and
/// older `mk-` secrets with the master key (current or retired) that sealed them.
///
/// Keys live in PostgreSQL while the port is synchronous: [`SecretCipher::prepare`]
/// loads (or creates) an owner's key into memory, re-reading it each time so a key
/// destroyed by another process is noticed at the next prepare.
pub struct EnvelopeCipher {
    pool: Pool,
    masters: MasterKeyCipher,
    owners: RwLock<HashMap<String, Arc<OwnerKey>>>,
}

impl EnvelopeCipher {
    /// A cipher keeping data keys in `pool`'s `owner_data_keys`, wrapped by `masters`'
    /// current key (its retired keys unwrap older rows and open older secrets).
    pub fn new(pool: Pool, masters: MasterKeyCipher) -> Self {
        Self {
            pool,
            masters,
            owners: RwLock::new(HashMap::new()),
        }
    }

    fn owner_key(&self, owner: &str) -> Option<Arc<OwnerKey>> {
        self.owners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(owner)
            .cloned()
    }

    fn remember(&self, owner: &str, key: OwnerKey) {
        self.owners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(owner.to_owned(), Arc::new(key));
    }
}

impl std::fmt::Debug for EnvelopeCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeCipher")
            .field("masters", &self.masters)
            .finish_non_exhaustive()
    }
}

fn not_prepared(owner: &str) -> CipherError {
    CipherError::Unavailable(format!("the data key of `{owner}` was not loaded"))
}

#[async_trait::async_trait]
impl SecretCipher for EnvelopeCipher {
    async fn prepare(&self, owner: &str) -> Result<(), CipherError> {
        match key_store::load_or_create(&self.pool, &self.masters, owner).await {
            Ok(key) => {
                self.remember(owner, key);
                Ok(())
            }
            // Rotated by another process after we loaded it: the data key itself is
            // unchanged, so the copy in memory stays good.
            Err(KeyStoreError::UnknownMasterKey { .. })
                if matches!(self.owner_key(owner).as_deref(), Some(OwnerKey::Live(_))) =>
            {
                Ok(())
            }
            Err(KeyStoreError::UnknownMasterKey { master_key_id, .. }) => {
                Err(CipherError::UnknownKey(master_key_id))
            }
            Err(KeyStoreError::Tampered(_)) => Err(CipherError::Tampered),
            Err(KeyStoreError::Destroyed { owner, key_id }) => {
                Err(CipherError::Destroyed { key_id, owner })
            }
            Err(e @ KeyStoreError::Store(_)) => Err(CipherError::Unavailable(e.to_string())),
        }
    }

    fn seal(
        &self,
        owner: &str,
        server_id: Uuid,
        key: &str,
        plaintext: &SecretString,
    ) -> Result<SealedSecret, CipherError> {
        let owner_key = self.owner_key(owner).ok_or_else(|| not_prepared(owner))?;
        match owner_key.as_ref() {
            OwnerKey::Live(data_key) => {
                let aad = associated_data(owner, server_id, key);
                seal_with(&aead(data_key.bytes()), data_key.id(), &aad, plaintext)
            }
            OwnerKey::Destroyed { key_id } => Err(CipherError::Destroyed {
                key_id: key_id.clone(),
                owner: owner.to_owned(),
            }),
        }
    }

    fn open(
        &self,
        owner: &str,
        server_id: Uuid,
        key: &str,
        sealed: &SealedSecret,
    ) -> Result<SecretString, CipherError> {
        if !sealed.key_id.starts_with(DATA_KEY_PREFIX) {
            // Sealed under the master key before data keys existed: the bytes would
            // still open, but a forgotten owner's secrets are refused all the same.
            if let Some(OwnerKey::Destroyed { key_id }) = self.owner_key(owner).as_deref() {
                return Err(CipherError::Destroyed {
                    key_id: key_id.clone(),
                    owner: owner.to_owned(),
                });
            }
            return self.masters.open(owner, server_id, key, sealed);
        }
        let owner_key = self.owner_key(owner).ok_or_else(|| not_prepared(owner))?;
        match owner_key.as_ref() {
            OwnerKey::Live(data_key) if data_key.id() == sealed.key_id => {
                let aad = associated_data(owner, server_id, key);
                open_with(&aead(data_key.bytes()), &aad, sealed)
            }
            OwnerKey::Destroyed { key_id } if *key_id == sealed.key_id => {
                Err(CipherError::Destroyed {
                    key_id: key_id.clone(),
                    owner: owner.to_owned(),
                })
            }
            // Another owner's data key, or one that never existed.
            _ => Err(CipherError::UnknownKey(sealed.key_id.clone())),
        }
    }
}
