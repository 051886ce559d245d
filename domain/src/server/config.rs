//! A server's configuration, its sealed secrets, and their validation against the
//! catalog entry's schema.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::ConfigKey;
use crate::validation::Violations;
use crate::FieldError;

/// A secret value sealed by the application's cipher. The domain never sees the
/// plaintext; only the runtime adapter opens it, at the moment it starts a server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Which key sealed it.
    pub key_id: String,
    /// The nonce, base64.
    pub nonce: String,
    /// The ciphertext with its tag, base64.
    pub ciphertext: String,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecret")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A change to one key: set it to a value, or remove it (`null` in the API).
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigChange<T> {
    /// Set the key.
    Set(T),
    /// Remove the key.
    Remove,
}

/// Checks a server's whole configuration against a catalog schema: every key known and
/// in the right place (plain keys in `config`, secret keys in `secrets`), every required
/// key present or defaulted, every value bounded.
pub fn validate_config<S>(
    schema: &[ConfigKey],
    config: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, S>,
) -> Result<(), Vec<FieldError>> {
    let mut v = Violations::default();
    let find = |k: &str| schema.iter().find(|s| s.key == k);
    for (key, value) in config {
        let field = format!("config.{key}");
        match find(key) {
            None => v.add(field, "is not a key of this catalog entry's config schema"),
            Some(s) if s.secret => v.add(field, "is a secret: pass it in `secrets`"),
            Some(_) => crate::catalog::check_value(&mut v, &field, value),
        }
    }
    for key in secrets.keys() {
        let field = format!("secrets.{key}");
        match find(key) {
            None => v.add(field, "is not a key of this catalog entry's config schema"),
            Some(s) if !s.secret => v.add(field, "is not a secret: pass it in `config`"),
            Some(_) => {}
        }
    }
    for key in schema.iter().filter(|k| k.required && k.default.is_none()) {
        let present = if key.secret {
            secrets.contains_key(&key.key)
        } else {
            config.contains_key(&key.key)
        };
        if !present {
            let place = if key.secret { "secrets" } else { "config" };
            v.add(format!("{place}.{}", key.key), "is required");
        }
    }
    v.into_result()
}
