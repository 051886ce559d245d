//! Reading the servers projection.

use berth_domain::server::ServerState;
use berth_infrastructure::StoreError;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::row::{ServerRow, COLUMNS};
use crate::codec::to_json;
use crate::page::{contains_pattern, Filters, ListQuery, Page, PageRequest};

/// What every secret value is shown as.
pub const SECRET_MASK: &str = "********";

/// Which servers to list. Absent fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFilter {
    /// Lifecycle state (`stopped`, `running`, ...).
    pub state: Option<String>,
    /// Servers of this catalog entry.
    pub catalog_id: Option<Uuid>,
    /// Case-insensitive substring of the name.
    pub q: Option<String>,
    /// Servers of this owner (e.g. `user:ann`).
    pub owner: Option<String>,
}

/// A server as the API shows it. Secrets appear as key names with masked values.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ServerView {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// The catalog entry it instantiates.
    pub catalog_id: Uuid,
    /// The entry's version when the server was created.
    pub catalog_version: i64,
    /// Its owner (e.g. `user:ann`).
    pub owner: String,
    /// Lifecycle state: `stopped`, `pending`, `creating`, `starting`, `running`,
    /// `stopping` or `failed`.
    pub state: String,
    /// Disabled servers refuse to start.
    pub enabled: bool,
    /// It will start again once stopped.
    pub restart_pending: bool,
    /// It will be deleted once stopped.
    pub delete_pending: bool,
    /// Plain configuration.
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub config: Value,
    /// Secret keys, each mapped to `"********"`.
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub secrets: Value,
    /// `unknown`, `healthy` or `unhealthy`.
    pub health: String,
    /// The tools it last reported: `[{ "name", "description"?, "input_schema"? }]`.
    #[schema(value_type = Vec<Object>)]
    pub tools: Value,
    /// The runtime's id for its container or process.
    pub container_id: Option<String>,
    /// The Berth node that runs its container or process (`berth serve --node`); `null`
    /// when it does not run.
    pub node: Option<String>,
    /// Where an `http` server answers MCP while it runs (Streamable HTTP, on this
    /// machine's loopback); `null` for stdio servers and when it does not run.
    pub endpoint: Option<String>,
    /// Why it last failed.
    pub last_error: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// The sequence of its last event.
    pub version: i64,
    /// The global position of its last event.
    pub position: i64,
    /// What Berth does when it fails: `{"type":"never"}` or
    /// `{"type":"on_failure","max_retries":N}`.
    #[schema(value_type = Object)]
    pub restart_policy: Value,
    /// Automatic restarts in a row since the last start a person asked for.
    pub restart_attempts: i32,
    /// Who besides its owner may use it through the MCP gateway:
    /// `{"everyone": bool, "users": [user id, ...]}`.
    #[schema(value_type = Object)]
    pub sharing: Value,
}

const LIST: ListQuery = ListQuery {
    columns: COLUMNS,
    from: "servers",
    order: "lower(name), id",
};

fn view(row: &Row) -> Result<ServerView, StoreError> {
    ServerRow::from_row(row)?.to_view()
}

impl ServerRow {
    /// The row as the API shows it: secret keys with masked values. The current state
    /// (`GET /servers/{id}`) and a past one (time travel) are both rendered here.
    pub(crate) fn to_view(&self) -> Result<ServerView, StoreError> {
        let secrets = self
            .secret_keys
            .iter()
            .map(|k| (k.clone(), Value::String(SECRET_MASK.to_string())))
            .collect::<serde_json::Map<_, _>>();
        Ok(ServerView {
            id: self.id,
            name: self.name.clone(),
            catalog_id: self.catalog_id,
            catalog_version: self.catalog_version,
            owner: self.owner.clone(),
            state: self.state.as_str().to_string(),
            enabled: self.enabled,
            restart_pending: self.restart_pending,
            delete_pending: self.delete_pending,
            config: to_json(&self.config)?,
            secrets: Value::Object(secrets),
            health: self.health_name(),
            tools: to_json(&self.tools)?,
            container_id: self.container_id.clone(),
            node: self.node.clone(),
            endpoint: self.endpoint.clone(),
            last_error: self.last_error.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
            position: self.position,
            restart_policy: to_json(&self.restart_policy)?,
            restart_attempts: i32::try_from(self.restart_attempts).unwrap_or(i32::MAX),
            sharing: to_json(&self.sharing)?,
        })
    }
}

/// Live servers matching `filter`, ordered by name.
pub async fn list_servers(
    client: &impl GenericClient,
    filter: &ServerFilter,
    page: PageRequest,
) -> Result<Page<ServerView>, StoreError> {
    let mut filters = Filters::default();
    filters.push("state = $?", filter.state.clone());
    filters.push("catalog_id = $?", filter.catalog_id);
    filters.push(
        "name ILIKE $? ESCAPE '\\'",
        contains_pattern(filter.q.as_deref()),
    );
    filters.push("owner = $?", filter.owner.clone());
    LIST.run(client, &filters, page, view).await
}

/// One live server, or `None` when it does not exist or was deleted.
pub async fn get_server(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<ServerView>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM servers WHERE id = $1");
    let statement = client.prepare_cached(&sql).await?;
    client
        .query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(view)
        .transpose()
}

/// The ids of live servers in any of `states`: what the reconciler and the health
/// checks walk.
pub async fn server_ids_in(
    client: &impl GenericClient,
    states: &[ServerState],
) -> Result<Vec<Uuid>, StoreError> {
    let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    let statement = client
        .prepare_cached("SELECT id FROM servers WHERE state = ANY($1)")
        .await?;
    let rows = client.query(&statement, &[&states]).await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}
