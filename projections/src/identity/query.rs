//! Reading the identity projection.

use berth_infrastructure::StoreError;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::page::{Filters, ListQuery, Page, PageRequest};

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UserView {
    /// Its id (derived from its name).
    pub id: Uuid,
    /// Its unique name.
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// Disabled users cannot authenticate.
    pub disabled: bool,
    /// Its data key was destroyed.
    pub forgotten: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Global position of the event that last changed it.
    pub position: i64,
}

/// An API key as the API shows it: never the key, never its hash.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ApiKeyView {
    /// Its id.
    pub id: Uuid,
    /// The user it belongs to.
    pub user_id: Uuid,
    /// What the holder calls it.
    pub name: String,
    /// Its first characters, to recognise it.
    pub prefix: String,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The gateway profiles it is limited to; empty: it may do all its user may.
    pub profiles: Vec<String>,
}

/// A stored key whose prefix matches a presented one, with what authenticating needs.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyCandidate {
    /// The key's id.
    pub key_id: Uuid,
    /// Its keyed hash (hex).
    pub hash: String,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Its user's id.
    pub user_id: Uuid,
    /// Its user's name.
    pub user_name: String,
    /// Its user's role.
    pub role: String,
    /// Whether its user is disabled.
    pub user_disabled: bool,
    /// The gateway profiles it is limited to (none: not limited).
    pub profiles: Vec<String>,
}

const USER_COLUMNS: &str = "id, name, role, disabled, forgotten, created_at, updated_at, position";
const KEY_COLUMNS: &str = "id, user_id, name, prefix, expires_at, revoked_at, created_at, profiles";

fn user_view(row: &Row) -> Result<UserView, StoreError> {
    Ok(UserView {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        disabled: row.try_get("disabled")?,
        forgotten: row.try_get("forgotten")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        position: row.try_get("position")?,
    })
}

fn key_view(row: &Row) -> Result<ApiKeyView, StoreError> {
    Ok(ApiKeyView {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        created_at: row.try_get("created_at")?,
        profiles: row.try_get("profiles")?,
    })
}

const USERS: ListQuery = ListQuery {
    columns: USER_COLUMNS,
    from: "users",
    order: "name, id",
};

const KEYS: ListQuery = ListQuery {
    columns: KEY_COLUMNS,
    from: "api_keys",
    order: "created_at, id",
};

/// A page of the users, by name.
pub async fn list_users(
    client: &impl GenericClient,
    page: PageRequest,
) -> Result<Page<UserView>, StoreError> {
    USERS
        .run(client, &Filters::default(), page, user_view)
        .await
}

/// One user.
pub async fn get_user(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<UserView>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    let statement = client.prepare_cached(&sql).await?;
    client
        .query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(user_view)
        .transpose()
}

/// A page of a user's keys, oldest first.
pub async fn list_api_keys(
    client: &impl GenericClient,
    user_id: Uuid,
    page: PageRequest,
) -> Result<Page<ApiKeyView>, StoreError> {
    let mut filters = Filters::default();
    filters.push("user_id = $?", Some(user_id));
    KEYS.run(client, &filters, page, key_view).await
}

/// One key.
pub async fn get_api_key(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<ApiKeyView>, StoreError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
    let statement = client.prepare_cached(&sql).await?;
    client
        .query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(key_view)
        .transpose()
}

/// What authenticating with a key reads, of `api_keys k` and `users u`.
const CANDIDATE_COLUMNS: &str = "SELECT k.id, k.hash, k.expires_at, \
     k.revoked_at IS NOT NULL AS revoked, u.id AS user_id, u.name, u.role, u.disabled, k.profiles";

fn key_candidate(row: &Row) -> Result<KeyCandidate, StoreError> {
    Ok(KeyCandidate {
        key_id: row.try_get("id")?,
        hash: row.try_get("hash")?,
        expires_at: row.try_get("expires_at")?,
        revoked: row.try_get("revoked")?,
        user_id: row.try_get("user_id")?,
        user_name: row.try_get("name")?,
        role: row.try_get("role")?,
        user_disabled: row.try_get("disabled")?,
        profiles: row.try_get("profiles")?,
    })
}

/// The keys whose prefix is `prefix`, with their users (usually one, or none).
pub async fn find_keys_by_prefix(
    client: &impl GenericClient,
    prefix: &str,
) -> Result<Vec<KeyCandidate>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "{CANDIDATE_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id \
             WHERE k.prefix = $1"
        ))
        .await?;
    client
        .query(&statement, &[&prefix])
        .await?
        .iter()
        .map(key_candidate)
        .collect()
}

/// A console session with its key and user: what its cookie is checked against on
/// every request.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionCandidate {
    /// The key it was opened with, and its user.
    pub key: KeyCandidate,
    /// Whether it was signed out.
    pub ended: bool,
    /// When it ends at the latest.
    pub expires_at: DateTime<Utc>,
}

/// Console session `id` with its key and user (`None`: no such session, or not projected
/// yet).
pub async fn find_console_session(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<SessionCandidate>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "{CANDIDATE_COLUMNS}, s.ended_at IS NOT NULL AS ended, \
             s.expires_at AS session_expires_at \
             FROM console_sessions s JOIN api_keys k ON k.id = s.key_id \
             JOIN users u ON u.id = k.user_id WHERE s.id = $1"
        ))
        .await?;
    client
        .query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(|row| {
            Ok(SessionCandidate {
                key: key_candidate(row)?,
                ended: row.try_get("ended")?,
                expires_at: row.try_get("session_expires_at")?,
            })
        })
        .transpose()
}
