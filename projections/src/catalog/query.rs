//! Reading the catalog projection.

use berth_infrastructure::StoreError;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::page::{contains_pattern, Filters, ListQuery, Page, PageRequest};

/// Which catalog entries to list. Absent fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogFilter {
    /// Case-insensitive substring of the name or the description.
    pub q: Option<String>,
    /// `stdio` or `http`.
    pub transport: Option<String>,
    /// `predefined` or `custom`.
    pub kind: Option<String>,
    /// Only entries this owner may see: predefined, published, or its own.
    pub visible_to: Option<String>,
}

/// A catalog entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CatalogEntryView {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// What the server does.
    pub description: String,
    /// `predefined` or `custom`.
    pub kind: String,
    /// `stdio` or `http`.
    pub transport: String,
    /// How it is run: `{ "type": "docker", "image", "command"?, "port"? }` or
    /// `{ "type": "process", "command", "args"? }`.
    #[schema(value_type = Object)]
    pub runtime: Value,
    /// The keys a server's configuration takes: `[{ "key", "description", "required",
    /// "secret", "default"? }]`.
    #[schema(value_type = Vec<Object>)]
    pub config_schema: Value,
    /// Resource limits: `{ "memory_mb"?, "cpus"?, "pids"? }`.
    #[schema(value_type = Object)]
    pub resources: Value,
    /// How the MCP gateway treats its servers: `{ "call_timeout_secs"?, "keep_arguments"? }`.
    #[schema(value_type = Object)]
    pub gateway: Value,
    /// 1 at registration, +1 on every update.
    pub version: i64,
    /// Its tools, `[{ "name", "description"?, "input_schema"? }]` by name: those its
    /// servers were last seen to offer, or for a registered API (`openapi`) those its
    /// document declares, known at registration.
    #[schema(value_type = Vec<Object>)]
    pub tools: Value,
    /// Who added it (custom entries only).
    pub owner: Option<String>,
    /// Whether a custom entry is visible to every user (predefined ones always are).
    pub published: bool,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When its definition last changed.
    pub updated_at: DateTime<Utc>,
    /// Global position of the event that last changed its definition.
    pub position: i64,
}

macro_rules! columns {
    () => {
        "id, name, description, kind, transport, runtime, config_schema, resources, version, \
         tools, owner, published, created_at, updated_at, position, gateway"
    };
}

const GET: &str = concat!("SELECT ", columns!(), " FROM catalog_entries WHERE id = $1");

const LIST: ListQuery = ListQuery {
    columns: columns!(),
    from: "catalog_entries",
    order: "lower(name), id",
};

fn view(row: &Row) -> Result<CatalogEntryView, StoreError> {
    Ok(CatalogEntryView {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        kind: row.try_get("kind")?,
        transport: row.try_get("transport")?,
        runtime: row.try_get("runtime")?,
        config_schema: row.try_get("config_schema")?,
        resources: row.try_get("resources")?,
        gateway: row.try_get("gateway")?,
        version: row.try_get("version")?,
        tools: row.try_get("tools")?,
        owner: row.try_get("owner")?,
        published: row.try_get("published")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        position: row.try_get("position")?,
    })
}

/// Live catalog entries matching `filter`, ordered by name.
pub async fn list_catalog(
    client: &impl GenericClient,
    filter: &CatalogFilter,
    page: PageRequest,
) -> Result<Page<CatalogEntryView>, StoreError> {
    let mut filters = Filters::default();
    filters.push(
        "(name ILIKE $? ESCAPE '\\' OR description ILIKE $? ESCAPE '\\')",
        contains_pattern(filter.q.as_deref()),
    );
    filters.push("transport = $?", filter.transport.clone());
    filters.push("kind = $?", filter.kind.clone());
    filters.push(
        "(kind = 'predefined' OR published OR owner = $?)",
        filter.visible_to.clone(),
    );
    LIST.run(client, &filters, page, view).await
}

impl CatalogEntryView {
    /// Whether `owner` (a non-administrator) may see this entry.
    pub fn visible_to(&self, owner: &str) -> bool {
        self.kind == "predefined" || self.published || self.owner.as_deref() == Some(owner)
    }
}

/// One live catalog entry, or `None` when it does not exist or was removed.
pub async fn get_catalog_entry(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<CatalogEntryView>, StoreError> {
    let statement = client.prepare_cached(GET).await?;
    client
        .query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(view)
        .transpose()
}
