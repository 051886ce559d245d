//! `ServerProjector`: folds a batch of server events into the rows they touch, then
//! writes those rows back with one upsert and one delete.

use std::collections::{BTreeSet, HashMap};

use berth_domain::server::Server;
use berth_domain::upcasting::upcasters;
use berth_infrastructure::feed::projector::Projector;
use berth_infrastructure::feed::StoredEvent;
use berth_infrastructure::StoreError;
use chrono::{DateTime, Utc};
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use deadpool_postgres::Transaction;
use serde_json::Value;
use uuid::Uuid;

use super::row::{change_of, Change, ServerRow, COLUMNS};
use crate::blue_green::Rebuildable;
use crate::codec::{aggregate_uuid, to_json};

/// The servers projection's subscription name.
pub const NAME: &str = "servers";

/// The tables this projection owns (rebuilt, switched and reset together).
pub const TABLES: &[&str] = &["servers"];

const UPSERT: &str = "INSERT INTO servers (id, name, catalog_id, catalog_version, owner, \
     state, enabled, restart_pending, delete_pending, config, secret_keys, health, tools, \
     container_id, last_error, created_at, updated_at, version, position, restart_policy, \
     restart_attempts, endpoint, sharing, node) \
     SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::int8[], $5::text[], \
     $6::text[], $7::bool[], $8::bool[], $9::bool[], $10::jsonb[], $11::jsonb[], $12::text[], \
     $13::jsonb[], $14::text[], $15::text[], $16::timestamptz[], $17::timestamptz[], \
     $18::int8[], $19::int8[], $20::jsonb[], $21::int4[], $22::text[], $23::jsonb[], $24::text[]) \
     ON CONFLICT (id) DO UPDATE SET name = excluded.name, catalog_id = excluded.catalog_id, \
     catalog_version = excluded.catalog_version, owner = excluded.owner, \
     state = excluded.state, enabled = excluded.enabled, \
     restart_pending = excluded.restart_pending, delete_pending = excluded.delete_pending, \
     config = excluded.config, secret_keys = excluded.secret_keys, health = excluded.health, \
     tools = excluded.tools, container_id = excluded.container_id, \
     last_error = excluded.last_error, created_at = excluded.created_at, \
     updated_at = excluded.updated_at, version = excluded.version, position = excluded.position, \
     restart_policy = excluded.restart_policy, restart_attempts = excluded.restart_attempts, \
     endpoint = excluded.endpoint, sharing = excluded.sharing, node = excluded.node";

const DELETE: &str = "DELETE FROM servers WHERE id = ANY($1)";

/// Projects server events into `servers`: one row per live server, its secrets as key
/// names only.
pub struct ServerProjector {
    upcasters: Vec<Box<dyn EventUpcaster>>,
}

impl ServerProjector {
    /// A projector decoding events with the domain's upcasters.
    pub fn new() -> Self {
        Self {
            upcasters: upcasters(),
        }
    }
}

impl Default for ServerProjector {
    fn default() -> Self {
        Self::new()
    }
}

impl Rebuildable for ServerProjector {}

/// The rows a batch touched: `Some` to write, `None` to delete.
type Touched = HashMap<Uuid, Option<ServerRow>>;

async fn load(tx: &Transaction<'_>, ids: &[Uuid]) -> Result<Touched, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM servers WHERE id = ANY($1)");
    let statement = tx.prepare_cached(&sql).await?;
    let mut rows = HashMap::with_capacity(ids.len());
    for row in tx.query(&statement, &[&ids]).await? {
        let row = ServerRow::from_row(&row)?;
        rows.insert(row.id, Some(row));
    }
    Ok(rows)
}

/// Column arrays for `UPSERT`.
#[derive(Default)]
struct Columns {
    id: Vec<Uuid>,
    name: Vec<String>,
    catalog_id: Vec<Uuid>,
    catalog_version: Vec<i64>,
    owner: Vec<String>,
    state: Vec<&'static str>,
    enabled: Vec<bool>,
    restart_pending: Vec<bool>,
    delete_pending: Vec<bool>,
    config: Vec<Value>,
    secret_keys: Vec<Value>,
    health: Vec<String>,
    tools: Vec<Value>,
    container_id: Vec<Option<String>>,
    last_error: Vec<Option<String>>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
    version: Vec<i64>,
    position: Vec<i64>,
    restart_policy: Vec<Value>,
    restart_attempts: Vec<i32>,
    endpoint: Vec<Option<String>>,
    sharing: Vec<Value>,
    node: Vec<Option<String>>,
}

impl Columns {
    fn push(&mut self, r: ServerRow) -> Result<(), StoreError> {
        self.health.push(r.health_name());
        self.config.push(to_json(&r.config)?);
        self.secret_keys.push(to_json(&r.secret_keys)?);
        self.tools.push(to_json(&r.tools)?);
        self.restart_policy.push(to_json(&r.restart_policy)?);
        self.sharing.push(to_json(&r.sharing)?);
        self.restart_attempts
            .push(i32::try_from(r.restart_attempts).unwrap_or(i32::MAX));
        self.id.push(r.id);
        self.name.push(r.name);
        self.catalog_id.push(r.catalog_id);
        self.catalog_version.push(r.catalog_version);
        self.owner.push(r.owner);
        self.state.push(r.state.as_str());
        self.enabled.push(r.enabled);
        self.restart_pending.push(r.restart_pending);
        self.delete_pending.push(r.delete_pending);
        self.container_id.push(r.container_id);
        self.endpoint.push(r.endpoint);
        self.node.push(r.node);
        self.last_error.push(r.last_error);
        self.created_at.push(r.created_at);
        self.updated_at.push(r.updated_at);
        self.version.push(r.version);
        self.position.push(r.position);
        Ok(())
    }

    async fn upsert(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let statement = tx.prepare_cached(UPSERT).await?;
        tx.execute(
            &statement,
            &[
                &self.id,
                &self.name,
                &self.catalog_id,
                &self.catalog_version,
                &self.owner,
                &self.state,
                &self.enabled,
                &self.restart_pending,
                &self.delete_pending,
                &self.config,
                &self.secret_keys,
                &self.health,
                &self.tools,
                &self.container_id,
                &self.last_error,
                &self.created_at,
                &self.updated_at,
                &self.version,
                &self.position,
                &self.restart_policy,
                &self.restart_attempts,
                &self.endpoint,
                &self.sharing,
                &self.node,
            ],
        )
        .await?;
        Ok(())
    }
}

impl Projector for ServerProjector {
    fn name(&self) -> &str {
        NAME
    }

    async fn apply(&self, tx: &Transaction<'_>, events: &[StoredEvent]) -> Result<(), StoreError> {
        let mut decoded = Vec::new();
        for event in events.iter().filter(|e| e.aggregate_type == Server::TYPE) {
            decoded.push((
                aggregate_uuid(event)?,
                event.decode::<Server>(&self.upcasters)?,
                event,
            ));
        }
        if decoded.is_empty() {
            return Ok(());
        }
        let ids: BTreeSet<Uuid> = decoded.iter().map(|(id, _, _)| *id).collect();
        let ids: Vec<Uuid> = ids.into_iter().collect();
        let mut touched = load(tx, &ids).await?;
        for (id, event, stored) in decoded {
            match change_of(id, event, stored.into()) {
                Change::Create(row) => {
                    touched.insert(id, Some(*row));
                }
                Change::Delete => {
                    touched.insert(id, None);
                }
                Change::Update(event) => match touched.get_mut(&id) {
                    Some(Some(row)) => row.apply(event, stored.into()),
                    _ => tracing::warn!(
                        server_id = %id,
                        position = stored.position,
                        "event for a server that does not exist in the read model; skipped"
                    ),
                },
            }
        }
        let mut upserts = Columns::default();
        let mut deletes = Vec::new();
        for (id, row) in touched {
            match row {
                Some(row) => upserts.push(row)?,
                None => deletes.push(id),
            }
        }
        if !deletes.is_empty() {
            let statement = tx.prepare_cached(DELETE).await?;
            tx.execute(&statement, &[&deletes]).await?;
        }
        if !upserts.id.is_empty() {
            upserts.upsert(tx).await?;
        }
        Ok(())
    }
}
