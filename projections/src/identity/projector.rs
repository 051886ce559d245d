//! `IdentityProjector`: keeps `users`, `api_keys` and `console_sessions` in step with
//! the user events.

use berth_domain::upcasting::upcasters;
use berth_domain::user::{User, UserEvent};
use berth_infrastructure::feed::projector::Projector;
use berth_infrastructure::feed::StoredEvent;
use berth_infrastructure::StoreError;
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use deadpool_postgres::Transaction;

use crate::blue_green::Rebuildable;
use crate::codec::aggregate_uuid;

/// The identity projection's subscription name.
pub const NAME: &str = "identity";

/// The tables this projection owns (rebuilt, switched and reset together).
pub const TABLES: &[&str] = &["users", "api_keys", "console_sessions"];

const INSERT_USER: &str = "INSERT INTO users (id, name, role, created_at, updated_at, position) \
     VALUES ($1, $2, $3, $4, $4, $5)";

const DISABLE_USER: &str = "UPDATE users SET disabled = true, forgotten = forgotten OR $2, \
     updated_at = $3, position = $4 WHERE id = $1";

const ENABLE_USER: &str =
    "UPDATE users SET disabled = false, updated_at = $2, position = $3 WHERE id = $1";

const INSERT_KEY: &str = "INSERT INTO api_keys \
     (id, user_id, name, prefix, hash, expires_at, created_at, position, profiles) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

const REVOKE_KEY: &str = "UPDATE api_keys SET revoked_at = $2, position = $3 WHERE id = $1";

const OPEN_SESSION: &str = "INSERT INTO console_sessions \
     (id, user_id, key_id, expires_at, opened_at, position) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (id) DO NOTHING";

const END_SESSION: &str = "UPDATE console_sessions SET ended_at = coalesce(ended_at, $2), \
     position = $3 WHERE id = $1";

/// Projects user events into `users`, `api_keys` and `console_sessions`.
pub struct IdentityProjector {
    upcasters: Vec<Box<dyn EventUpcaster>>,
}

impl IdentityProjector {
    /// A projector decoding events with the domain's upcasters.
    pub fn new() -> Self {
        Self {
            upcasters: upcasters(),
        }
    }

    async fn apply_one(&self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), StoreError> {
        let id = aggregate_uuid(event)?;
        let at = &event.recorded_at;
        let position = &event.position;
        match event.decode::<User>(&self.upcasters)? {
            UserEvent::Created { name, role, .. } => {
                let statement = tx.prepare_cached(INSERT_USER).await?;
                tx.execute(&statement, &[&id, &name, &role.as_str(), at, position])
                    .await?;
            }
            e @ (UserEvent::Disabled | UserEvent::Forgotten) => {
                let forgotten = e == UserEvent::Forgotten;
                let statement = tx.prepare_cached(DISABLE_USER).await?;
                tx.execute(&statement, &[&id, &forgotten, at, position])
                    .await?;
            }
            UserEvent::Enabled => {
                let statement = tx.prepare_cached(ENABLE_USER).await?;
                tx.execute(&statement, &[&id, at, position]).await?;
            }
            UserEvent::KeyCreated {
                key_id,
                name,
                prefix,
                digest,
                expires_at,
                profiles,
            } => {
                let profiles: Vec<String> = profiles.into_iter().collect();
                let statement = tx.prepare_cached(INSERT_KEY).await?;
                tx.execute(
                    &statement,
                    &[
                        &key_id,
                        &id,
                        &name,
                        &prefix,
                        &digest.value,
                        &expires_at,
                        at,
                        position,
                        &profiles,
                    ],
                )
                .await?;
            }
            UserEvent::KeyRevoked { key_id } => {
                let statement = tx.prepare_cached(REVOKE_KEY).await?;
                tx.execute(&statement, &[&key_id, at, position]).await?;
            }
            UserEvent::TokenIssued { .. } => {}
            UserEvent::ConsoleSessionOpened {
                key_id,
                session_id,
                expires_at,
            } => {
                let statement = tx.prepare_cached(OPEN_SESSION).await?;
                tx.execute(
                    &statement,
                    &[&session_id, &id, &key_id, &expires_at, at, position],
                )
                .await?;
            }
            UserEvent::ConsoleSessionEnded { session_id } => {
                let statement = tx.prepare_cached(END_SESSION).await?;
                tx.execute(&statement, &[&session_id, at, position]).await?;
            }
        }
        Ok(())
    }
}

impl Default for IdentityProjector {
    fn default() -> Self {
        Self::new()
    }
}

impl Rebuildable for IdentityProjector {}

impl Projector for IdentityProjector {
    fn name(&self) -> &str {
        NAME
    }

    async fn apply(&self, tx: &Transaction<'_>, events: &[StoredEvent]) -> Result<(), StoreError> {
        // Identity events are few (people and keys, not traffic): one statement each.
        for event in events.iter().filter(|e| e.aggregate_type == User::TYPE) {
            self.apply_one(tx, event).await?;
        }
        Ok(())
    }
}
