//! The gateway's sessions as every Berth on the database sees them (`gateway_sessions`):
//! the SDK's session store (the client's `initialize`, replayed by a Berth that is asked
//! about a session it does not hold) and who opened each, so that such a Berth holds the
//! session to its owner as the one that opened it does.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use rmcp::transport::streamable_http_server::session::store::{
    SessionState, SessionStore, SessionStoreError,
};
use uuid::Uuid;

use super::owners::Binding;

/// How long a session is kept for another Berth to take up.
pub const KEPT_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// See the module documentation.
#[derive(Clone)]
pub struct StoredSessions {
    pool: Pool,
}

impl StoredSessions {
    /// Sessions kept in `pool`'s database.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Records that `binding` opened session `id`.
    pub(crate) async fn opened(
        &self,
        id: &str,
        binding: &Binding,
    ) -> Result<(), SessionStoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO gateway_sessions (id, user_id, key_id, profile) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET \
                 user_id = excluded.user_id, key_id = excluded.key_id, profile = excluded.profile",
                &[&id, &binding.user_id, &binding.key_id, &binding.profile],
            )
            .await?;
        Ok(())
    }

    /// Who opened session `id`, if it is kept.
    pub(crate) async fn owner(&self, id: &str) -> Result<Option<Binding>, SessionStoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT user_id, key_id, profile FROM gateway_sessions \
                 WHERE id = $1 AND user_id IS NOT NULL",
                &[&id],
            )
            .await?;
        Ok(match row {
            Some(row) => Some(Binding {
                user_id: row.try_get("user_id")?,
                key_id: row.try_get("key_id")?,
                profile: row.try_get("profile")?,
            }),
            None => None,
        })
    }

    /// Forgets the sessions of `user_id` (opened with `key_id` only, when given).
    pub(crate) async fn end_of(
        &self,
        user_id: Uuid,
        key_id: Option<Uuid>,
    ) -> Result<u64, SessionStoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM gateway_sessions WHERE user_id = $1 \
                 AND ($2::uuid IS NULL OR key_id = $2)",
                &[&user_id, &key_id],
            )
            .await?)
    }

    /// Forgets the sessions opened more than [`KEPT_FOR`] ago.
    pub async fn forget_old(&self) -> Result<u64, SessionStoreError> {
        let client = self.pool.get().await?;
        let seconds = KEPT_FOR.as_secs_f64();
        Ok(client
            .execute(
                "DELETE FROM gateway_sessions \
                 WHERE opened_at < now() - $1::float8 * interval '1 second'",
                &[&seconds],
            )
            .await?)
    }
}

#[async_trait]
impl SessionStore for StoredSessions {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT state FROM gateway_sessions \
                 WHERE id = $1 AND user_id IS NOT NULL AND state IS NOT NULL",
                &[&session_id],
            )
            .await?;
        match row {
            Some(row) => Ok(Some(serde_json::from_value(row.try_get("state")?)?)),
            None => Ok(None),
        }
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let client = self.pool.get().await?;
        let state = serde_json::to_value(state)?;
        client
            .execute(
                "INSERT INTO gateway_sessions (id, state) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state",
                &[&session_id, &state],
            )
            .await?;
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        let client = self.pool.get().await?;
        client
            .execute("DELETE FROM gateway_sessions WHERE id = $1", &[&session_id])
            .await?;
        Ok(())
    }
}
