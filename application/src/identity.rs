//! Users and their API keys: creating, disabling, forgetting users; creating and
//! revoking keys; recording issued tokens. Keys are generated here and leave only once,
//! in the answer to whoever asked; the event log keeps their prefix and keyed hash.

use berth_domain::user::{user_id, KeyDigest, Role, UserCommand, UserError};
use berth_domain::UserId;
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::persist::PersistedEventRepository;
use rand::rngs::OsRng;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::commands::CommandBus;
use crate::error::AppError;
use crate::metadata::CommandMetadata;
use crate::ports::ApiKeyHasher;
use crate::receipt::Receipt;

/// Every key starts with this, so leaked keys are easy to scan for.
pub const KEY_TAG: &str = "berth_";

/// How many leading characters of a key identify it (`berth_` and 8 hex digits).
pub const KEY_PREFIX_LEN: usize = KEY_TAG.len() + 8;

/// The visible, non-secret part of `key`, when it is long enough to have one.
pub fn key_prefix(key: &str) -> Option<&str> {
    key.get(..KEY_PREFIX_LEN)
        .filter(|_| key.len() > KEY_PREFIX_LEN)
}

/// A fresh key: `berth_` and 64 hex digits (256 random bits).
pub fn generate_api_key() -> SecretString {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    SecretString::from(format!("{KEY_TAG}{hex}"))
}

/// A key just created: the only time the key itself is known.
pub struct IssuedKey {
    /// The key's id.
    pub id: Uuid,
    /// The key. Shown once.
    pub key: SecretString,
    /// Its visible prefix.
    pub prefix: String,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// Where its event landed.
    pub receipt: Receipt,
}

impl<R: PersistedEventRepository + Clone> CommandBus<R> {
    /// Creates user `name` with `role`; answers its id.
    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        metadata: &CommandMetadata,
    ) -> Result<(UserId, Receipt), AppError> {
        let id = user_id(name);
        let command = UserCommand::Create {
            name: name.to_string(),
            role,
        };
        let receipt = self.user(id, command, metadata).await?;
        Ok((id, receipt))
    }

    /// Disables a user: its keys and tokens stop working (tokens when they expire).
    /// `administrators` are the ids of every user created as an administrator: the last
    /// active one is never disabled.
    pub async fn disable_user(
        &self,
        id: UserId,
        administrators: &[UserId],
        metadata: &CommandMetadata,
    ) -> Result<Receipt, AppError> {
        let _turn = self.administrators_turn.lock().await;
        let another_active_admin = self.another_active_admin(id, administrators).await?;
        let command = UserCommand::Disable {
            another_active_admin,
        };
        self.user(id, command, metadata).await
    }

    /// Lets a disabled user authenticate again with its keys that were not revoked.
    pub async fn enable_user(
        &self,
        id: UserId,
        metadata: &CommandMetadata,
    ) -> Result<Receipt, AppError> {
        self.user(id, UserCommand::Enable, metadata).await
    }

    /// Fails as forgetting `id` would (it is the last active administrator), before
    /// anything irreversible is done to it.
    pub async fn ensure_forgettable(
        &self,
        id: UserId,
        administrators: &[UserId],
    ) -> Result<(), AppError> {
        let user = self.load_user(id).await?;
        if user.is_active_admin() && !self.another_active_admin(id, administrators).await? {
            return Err(UserError::LastAdministrator.into());
        }
        Ok(())
    }

    /// Records that a user's data key was destroyed (which disables it).
    pub async fn record_user_forgotten(
        &self,
        id: UserId,
        administrators: &[UserId],
        metadata: &CommandMetadata,
    ) -> Result<Receipt, AppError> {
        let _turn = self.administrators_turn.lock().await;
        let another_active_admin = self.another_active_admin(id, administrators).await?;
        let command = UserCommand::Forget {
            another_active_admin,
        };
        self.user(id, command, metadata).await
    }

    /// Whether an administrator other than `id` may act, by the store's current state of
    /// each (not a projection, which may lag behind a disable just committed).
    async fn another_active_admin(
        &self,
        id: UserId,
        administrators: &[UserId],
    ) -> Result<bool, AppError> {
        for other in administrators.iter().filter(|other| **other != id) {
            if self.load_user(*other).await?.is_active_admin() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Creates a new key for a user.
    pub async fn create_api_key(
        &self,
        user: UserId,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
        profiles: BTreeSet<String>,
        hasher: &dyn ApiKeyHasher,
        metadata: &CommandMetadata,
    ) -> Result<IssuedKey, AppError> {
        let key = generate_api_key();
        self.record_api_key(user, name, key, expires_at, profiles, hasher, metadata)
            .await
    }

    /// Records `key` (made elsewhere, e.g. the bootstrap admin token) as a key of `user`.
    pub async fn register_api_key(
        &self,
        user: UserId,
        name: &str,
        key: SecretString,
        expires_at: Option<DateTime<Utc>>,
        hasher: &dyn ApiKeyHasher,
        metadata: &CommandMetadata,
    ) -> Result<IssuedKey, AppError> {
        self.record_api_key(
            user,
            name,
            key,
            expires_at,
            BTreeSet::new(),
            hasher,
            metadata,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_api_key(
        &self,
        user: UserId,
        name: &str,
        key: SecretString,
        expires_at: Option<DateTime<Utc>>,
        profiles: BTreeSet<String>,
        hasher: &dyn ApiKeyHasher,
        metadata: &CommandMetadata,
    ) -> Result<IssuedKey, AppError> {
        let prefix = key_prefix(key.expose_secret())
            .ok_or_else(|| AppError::Internal("an API key is too short to have a prefix".into()))?
            .to_string();
        let id = Uuid::now_v7();
        let command = UserCommand::CreateKey {
            key_id: id,
            name: name.to_string(),
            prefix: prefix.clone(),
            digest: KeyDigest::hmac_sha256(hasher.hash(key.expose_secret())),
            expires_at,
            profiles,
            now: Utc::now(),
        };
        let receipt = self.user(user, command, metadata).await?;
        Ok(IssuedKey {
            id,
            key,
            prefix,
            expires_at,
            receipt,
        })
    }

    /// Revokes one key of a user.
    pub async fn revoke_api_key(
        &self,
        user: UserId,
        key_id: Uuid,
        metadata: &CommandMetadata,
    ) -> Result<Receipt, AppError> {
        self.user(user, UserCommand::RevokeKey { key_id }, metadata)
            .await
    }

    /// Records that a token was issued for `key_id`, refused if the user or key can no
    /// longer be used (the aggregate, not the read model, has the last word).
    pub async fn record_token_issued(
        &self,
        user: UserId,
        key_id: Uuid,
        token_id: Uuid,
        expires_at: DateTime<Utc>,
        metadata: &CommandMetadata,
    ) -> Result<Receipt, AppError> {
        let command = UserCommand::IssueToken {
            key_id,
            token_id,
            expires_at,
            now: Utc::now(),
        };
        self.user(user, command, metadata).await
    }

    /// Records that `user` signed in to the console with `key_id`, refused like a token
    /// when the user or key can no longer be used.
    pub async fn record_console_session_opened(
        &self,
        user: UserId,
        key_id: Uuid,
        session_id: Uuid,
        expires_at: DateTime<Utc>,
        metadata: &CommandMetadata,
    ) -> Result<Receipt, AppError> {
        let command = UserCommand::OpenConsoleSession {
            key_id,
            session_id,
            expires_at,
            now: Utc::now(),
        };
        self.user(user, command, metadata).await
    }

    /// Records that `user` signed console session `session_id` out.
    pub async fn record_console_session_ended(
        &self,
        user: UserId,
        session_id: Uuid,
        metadata: &CommandMetadata,
    ) -> Result<Receipt, AppError> {
        self.user(
            user,
            UserCommand::EndConsoleSession { session_id },
            metadata,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_carry_a_prefix() {
        let a = generate_api_key();
        let b = generate_api_key();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), KEY_TAG.len() + 64);
        let prefix = key_prefix(a.expose_secret()).unwrap_or_default();
        assert!(prefix.starts_with(KEY_TAG) && prefix.len() == KEY_PREFIX_LEN);
        assert_eq!(key_prefix("berth_12"), None);
        assert_eq!(key_prefix("berth_1234567é"), None);
    }
}
