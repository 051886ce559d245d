//! The `User` aggregate.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, DomainEvent};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::role::Role;
use crate::decide::handle_by_decide;
use crate::validation::{check_name, Violations};
use crate::FieldError;

/// The most gateway profiles one API key may be limited to.
pub const MAX_KEY_PROFILES: usize = 20;

/// A user: its name and role, whether it may still act, and its API keys.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Unique and fixed for the user's life; `None` until created.
    pub name: Option<String>,
    /// What the user may do.
    pub role: Option<Role>,
    /// Disabled users can neither authenticate nor be given keys.
    pub disabled: bool,
    /// The user's data key was destroyed; implies `disabled`.
    pub forgotten: bool,
    /// Every key ever created for the user, by id.
    pub keys: BTreeMap<Uuid, ApiKeyState>,
}

/// How an API key's digest was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyHashAlgorithm {
    /// HMAC-SHA-256 under the installation's key-hashing key, as lowercase hex.
    HmacSha256,
}

/// A keyed digest of an API key together with the algorithm that made it, so that keys
/// recorded under one algorithm can still be checked after Berth adopts another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDigest {
    /// How `value` was computed.
    pub algorithm: KeyHashAlgorithm,
    /// The digest itself.
    pub value: String,
}

impl KeyDigest {
    /// An HMAC-SHA-256 digest given as hex.
    pub fn hmac_sha256(value: String) -> Self {
        Self {
            algorithm: KeyHashAlgorithm::HmacSha256,
            value,
        }
    }
}

/// What the aggregate remembers of one API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyState {
    /// The key's visible prefix.
    pub prefix: String,
    /// The keyed digest of the key.
    pub digest: KeyDigest,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revoked keys never work again.
    pub revoked: bool,
}

/// What may be asked of a user.
#[derive(Debug, Clone, PartialEq)]
pub enum UserCommand {
    /// Create the user.
    Create {
        /// Its unique name.
        name: String,
        /// Its role.
        role: Role,
    },
    /// Stop the user from authenticating; its keys stop working.
    Disable {
        /// Whether another administrator is active: the application looks, since no
        /// single user knows. The last active administrator cannot be disabled.
        another_active_admin: bool,
    },
    /// Let a disabled user authenticate again (with keys not revoked).
    Enable,
    /// Record a new API key. The key itself never reaches the aggregate: only its
    /// prefix and keyed hash.
    CreateKey {
        /// The key's id.
        key_id: Uuid,
        /// What the holder calls it.
        name: String,
        /// Its visible prefix.
        prefix: String,
        /// Its keyed digest.
        digest: KeyDigest,
        /// When it stops working, if ever.
        expires_at: Option<DateTime<Utc>>,
        /// The gateway profiles it is limited to; none: it may do all its user may.
        profiles: BTreeSet<String>,
        /// The time now, to refuse expiries in the past.
        now: DateTime<Utc>,
    },
    /// Revoke a key.
    RevokeKey {
        /// The key's id.
        key_id: Uuid,
    },
    /// Record that a short-lived token was issued for a key.
    IssueToken {
        /// The key presented.
        key_id: Uuid,
        /// The token's id (`jti`).
        token_id: Uuid,
        /// When the token expires.
        expires_at: DateTime<Utc>,
        /// The time now, to refuse expired keys.
        now: DateTime<Utc>,
    },
    /// Record that a console session was opened with a key (signing in to the console).
    OpenConsoleSession {
        /// The key presented.
        key_id: Uuid,
        /// The session's id.
        session_id: Uuid,
        /// When the session ends at the latest.
        expires_at: DateTime<Utc>,
        /// The time now, to refuse expired keys.
        now: DateTime<Utc>,
    },
    /// Record that a console session was signed out: its cookie no longer works.
    EndConsoleSession {
        /// The session's id.
        session_id: Uuid,
    },
    /// Record that the user's data key was destroyed: their secrets are gone for good.
    /// It disables the user too, so the last active administrator cannot be forgotten.
    Forget {
        /// Whether another administrator is active.
        another_active_admin: bool,
    },
}

/// What happened to a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UserEvent {
    /// The user exists from now on.
    Created {
        /// Its name.
        name: String,
        /// Its role.
        role: Role,
        /// `user:NAME`: the user's own stream belongs to it, so it sees its own security
        /// events.
        owner: String,
    },
    /// The user can no longer authenticate.
    Disabled,
    /// The user may authenticate again.
    Enabled,
    /// A key was created (stored as prefix and keyed digest only). Version 2; version 1
    /// carried the digest as a bare `hash` string (see `crate::upcasting`).
    KeyCreated {
        /// The key's id.
        key_id: Uuid,
        /// What the holder calls it.
        name: String,
        /// Its visible prefix.
        prefix: String,
        /// Its keyed digest.
        digest: KeyDigest,
        /// When it stops working, if ever.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
        /// The gateway profiles it is limited to; none: it may do all its user may.
        #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
        profiles: BTreeSet<String>,
    },
    /// A key was revoked.
    KeyRevoked {
        /// The key's id.
        key_id: Uuid,
    },
    /// A token was issued for a key.
    TokenIssued {
        /// The key presented.
        key_id: Uuid,
        /// The token's id.
        token_id: Uuid,
        /// When the token expires.
        expires_at: DateTime<Utc>,
    },
    /// The user's data key was destroyed.
    Forgotten,
    /// The user signed in to the console with a key.
    ConsoleSessionOpened {
        /// The key presented.
        key_id: Uuid,
        /// The session's id.
        session_id: Uuid,
        /// When the session ends at the latest.
        expires_at: DateTime<Utc>,
    },
    /// The user signed a console session out.
    ConsoleSessionEnded {
        /// The session's id.
        session_id: Uuid,
    },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Created { .. } => "UserCreated",
            Self::Disabled => "UserDisabled",
            Self::Enabled => "UserEnabled",
            Self::KeyCreated { .. } => "ApiKeyCreated",
            Self::KeyRevoked { .. } => "ApiKeyRevoked",
            Self::TokenIssued { .. } => "TokenIssued",
            Self::Forgotten => "UserForgotten",
            Self::ConsoleSessionOpened { .. } => "ConsoleSessionOpened",
            Self::ConsoleSessionEnded { .. } => "ConsoleSessionEnded",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        match self {
            Self::KeyCreated { .. } => crate::upcasting::API_KEY_CREATED_VERSION,
            _ => "1",
        }
        .to_string()
    }
}

/// Why a user command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UserError {
    /// A user with this name exists (or existed: names are never reused).
    #[error("a user with this name already exists")]
    AlreadyExists,
    /// No such user.
    #[error("user not found")]
    NotFound,
    /// The user is disabled.
    #[error("the user is disabled")]
    Disabled,
    /// The user was forgotten before.
    #[error("the user was already forgotten")]
    AlreadyForgotten,
    /// A forgotten user's secrets are gone for good, and so is the user.
    #[error("the user was forgotten: it cannot be enabled again")]
    Forgotten,
    /// Enabling a user that is not disabled.
    #[error("the user is already enabled")]
    AlreadyEnabled,
    /// Disabling (or forgetting) the only active administrator would lock everyone out.
    #[error("this is the last active administrator: enable or create another administrator first")]
    LastAdministrator,
    /// No key with this id belongs to the user.
    #[error("API key not found")]
    KeyNotFound,
    /// The key was revoked.
    #[error("the API key is revoked")]
    KeyRevoked,
    /// The key's expiry has passed.
    #[error("the API key has expired")]
    KeyExpired,
    /// The key id was used before.
    #[error("an API key with this id already exists")]
    KeyExists,
    /// The input breaks a rule.
    #[error("invalid user or key")]
    Invalid(Vec<FieldError>),
}

impl User {
    /// An administrator that may act: disabling it takes away an administrator.
    pub fn is_active_admin(&self) -> bool {
        self.role == Some(Role::Admin) && !self.disabled
    }

    fn live(&self) -> Result<(), UserError> {
        if self.name.is_none() {
            return Err(UserError::NotFound);
        }
        if self.disabled {
            return Err(UserError::Disabled);
        }
        Ok(())
    }

    fn key(&self, key_id: Uuid) -> Result<&ApiKeyState, UserError> {
        self.keys.get(&key_id).ok_or(UserError::KeyNotFound)
    }

    /// Refused unless the user is live and key `key_id` neither revoked nor expired at
    /// `now`: what a token or a console session is issued for.
    fn usable_key(&self, key_id: Uuid, now: DateTime<Utc>) -> Result<(), UserError> {
        self.live()?;
        let key = self.key(key_id)?;
        if key.revoked {
            return Err(UserError::KeyRevoked);
        }
        if key.expires_at.is_some_and(|at| at <= now) {
            return Err(UserError::KeyExpired);
        }
        Ok(())
    }

    /// Decides which events `command` produces, without changing anything.
    pub fn decide(&self, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
        match command {
            UserCommand::Create { name, role } => {
                if self.name.is_some() {
                    return Err(UserError::AlreadyExists);
                }
                let mut v = Violations::default();
                check_name(&mut v, "name", &name);
                v.into_result().map_err(UserError::Invalid)?;
                let owner = super::owner_of(&name);
                Ok(vec![UserEvent::Created { name, role, owner }])
            }
            UserCommand::Disable {
                another_active_admin,
            } => {
                self.live()?;
                if self.is_active_admin() && !another_active_admin {
                    return Err(UserError::LastAdministrator);
                }
                Ok(vec![UserEvent::Disabled])
            }
            UserCommand::Enable => {
                if self.name.is_none() {
                    return Err(UserError::NotFound);
                }
                if self.forgotten {
                    return Err(UserError::Forgotten);
                }
                if !self.disabled {
                    return Err(UserError::AlreadyEnabled);
                }
                Ok(vec![UserEvent::Enabled])
            }
            UserCommand::CreateKey {
                key_id,
                name,
                prefix,
                digest,
                expires_at,
                profiles,
                now,
            } => {
                self.live()?;
                if self.keys.contains_key(&key_id) {
                    return Err(UserError::KeyExists);
                }
                let mut v = Violations::default();
                check_name(&mut v, "name", &name);
                if expires_at.is_some_and(|at| at <= now) {
                    v.add("expires_at", "must be in the future");
                }
                if profiles.len() > MAX_KEY_PROFILES {
                    v.add(
                        "profiles",
                        format!("must name at most {MAX_KEY_PROFILES} profiles"),
                    );
                }
                for profile in &profiles {
                    check_name(&mut v, "profiles", profile);
                }
                v.into_result().map_err(UserError::Invalid)?;
                Ok(vec![UserEvent::KeyCreated {
                    key_id,
                    name,
                    prefix,
                    digest,
                    expires_at,
                    profiles,
                }])
            }
            UserCommand::RevokeKey { key_id } => {
                if self.name.is_none() {
                    return Err(UserError::NotFound);
                }
                if self.key(key_id)?.revoked {
                    return Err(UserError::KeyRevoked);
                }
                Ok(vec![UserEvent::KeyRevoked { key_id }])
            }
            UserCommand::IssueToken {
                key_id,
                token_id,
                expires_at,
                now,
            } => {
                self.usable_key(key_id, now)?;
                Ok(vec![UserEvent::TokenIssued {
                    key_id,
                    token_id,
                    expires_at,
                }])
            }
            UserCommand::OpenConsoleSession {
                key_id,
                session_id,
                expires_at,
                now,
            } => {
                self.usable_key(key_id, now)?;
                Ok(vec![UserEvent::ConsoleSessionOpened {
                    key_id,
                    session_id,
                    expires_at,
                }])
            }
            UserCommand::EndConsoleSession { session_id } => {
                // Ending is always allowed (a disabled user's sessions end anyway); the
                // aggregate keeps no sessions, so ending one twice records it twice.
                if self.name.is_none() {
                    return Err(UserError::NotFound);
                }
                Ok(vec![UserEvent::ConsoleSessionEnded { session_id }])
            }
            UserCommand::Forget {
                another_active_admin,
            } => {
                if self.name.is_none() {
                    return Err(UserError::NotFound);
                }
                if self.forgotten {
                    return Err(UserError::AlreadyForgotten);
                }
                if self.is_active_admin() && !another_active_admin {
                    return Err(UserError::LastAdministrator);
                }
                Ok(vec![UserEvent::Forgotten])
            }
        }
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    handle_by_decide!();

    fn apply(&mut self, event: Self::Event) {
        match event {
            UserEvent::Created { name, role, .. } => {
                self.name = Some(name);
                self.role = Some(role);
            }
            UserEvent::Disabled => self.disabled = true,
            UserEvent::Enabled => self.disabled = false,
            UserEvent::KeyCreated {
                key_id,
                prefix,
                digest,
                expires_at,
                ..
            } => {
                self.keys.insert(
                    key_id,
                    ApiKeyState {
                        prefix,
                        digest,
                        expires_at,
                        revoked: false,
                    },
                );
            }
            UserEvent::KeyRevoked { key_id } => {
                if let Some(key) = self.keys.get_mut(&key_id) {
                    key.revoked = true;
                }
            }
            UserEvent::TokenIssued { .. }
            | UserEvent::ConsoleSessionOpened { .. }
            | UserEvent::ConsoleSessionEnded { .. } => {}
            UserEvent::Forgotten => {
                self.forgotten = true;
                self.disabled = true;
            }
        }
    }
}
