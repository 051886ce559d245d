//! `CatalogProjector`: keeps `catalog_entries` in step with catalog events, and the tools
//! of each entry in step with what its servers discover.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use berth_domain::catalog::openapi::operations;
use berth_domain::catalog::{CatalogDefinition, CatalogEntry, CatalogEvent, RuntimeSpec};
use berth_domain::server::{Server, ServerEvent, Tool};
use berth_domain::upcasting::upcasters;
use berth_infrastructure::feed::projector::Projector;
use berth_infrastructure::feed::StoredEvent;
use berth_infrastructure::StoreError;
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use deadpool_postgres::Transaction;
use uuid::Uuid;

use crate::blue_green::Rebuildable;
use crate::codec::{aggregate_uuid, to_json, variant_name};

/// The catalog projection's subscription name.
pub const NAME: &str = "catalog";

/// The tables this projection owns (rebuilt, switched and reset together).
pub const TABLES: &[&str] = &["catalog_entries", "catalog_server_tools"];

const INSERT_ENTRY: &str = "INSERT INTO catalog_entries \
     (id, name, description, kind, transport, runtime, config_schema, resources, version, \
      owner, created_at, updated_at, position, gateway, tools) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, \
             coalesce($14, '[]'::jsonb))";

// An entry whose tools its definition declares (a registered API's operations) has
// those; the others keep what their servers reported.
const UPDATE_ENTRY: &str = "UPDATE catalog_entries SET name = $2, description = $3, \
     transport = $4, runtime = $5, config_schema = $6, resources = $7, version = $8, \
     updated_at = $9, position = $10, gateway = $11, tools = coalesce($12, tools) \
     WHERE id = $1";

const SET_PUBLISHED: &str = "UPDATE catalog_entries SET published = $2, updated_at = $3, \
     position = $4 WHERE id = $1";

const DELETE_ENTRY: &str = "DELETE FROM catalog_entries WHERE id = $1";

const DELETE_ENTRY_SERVERS: &str = "DELETE FROM catalog_server_tools WHERE catalog_id = $1";

const INSERT_SERVERS: &str = "INSERT INTO catalog_server_tools (server_id, catalog_id, position) \
     SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::int8[])";

const UPDATE_SERVER_TOOLS: &str = "UPDATE catalog_server_tools s \
     SET tools = u.tools, position = u.position \
     FROM UNNEST($1::uuid[], $2::jsonb[], $3::int8[]) AS u(server_id, tools, position) \
     WHERE s.server_id = u.server_id RETURNING s.catalog_id";

// Tools are merged by name; when servers disagree about a tool, the most recent
// discovery describes it (and within one list, the first mention), so a rebuild always
// picks the same description.
const RECOMPUTE_TOOLS: &str = "UPDATE catalog_entries c SET tools = coalesce(( \
         SELECT jsonb_agg(t.tool ORDER BY t.tool->>'name') FROM ( \
             SELECT DISTINCT ON (e.tool->>'name') e.tool \
             FROM catalog_server_tools s, \
                  jsonb_array_elements(s.tools) WITH ORDINALITY AS e(tool, n) \
             WHERE s.catalog_id = c.id \
             ORDER BY e.tool->>'name', s.position DESC, e.n) t), '[]'::jsonb) \
     WHERE c.id = ANY($1) AND c.runtime->>'type' IS DISTINCT FROM 'openapi'";

/// Projects catalog events (and the server events that tell which tools an entry's
/// servers offer) into `catalog_entries`.
pub struct CatalogProjector {
    upcasters: Vec<Box<dyn EventUpcaster>>,
    // Building a rebuild's copy: the entries whose tools are recomputed once, when it is
    // filled, rather than after every batch. An entry's tools are a function of its
    // servers' rows and its current runtime alone (a registered API's come from its
    // document and are never recomputed), so the last computation gives the same answer
    // either way, and an entry with many servers no longer costs a pass over all of them
    // per batch.
    deferred: Option<Mutex<BTreeSet<Uuid>>>,
}

impl CatalogProjector {
    /// A projector decoding events with the domain's upcasters.
    pub fn new() -> Self {
        Self {
            upcasters: upcasters(),
            deferred: None,
        }
    }

    /// Applies one catalog event; returns the entry when its tools must be gathered from
    /// its servers again (an update to a definition that declares none: an entry that was
    /// a registered API keeps no tools of its document).
    async fn apply_catalog(
        &self,
        tx: &Transaction<'_>,
        event: &StoredEvent,
    ) -> Result<Option<Uuid>, StoreError> {
        let id = aggregate_uuid(event)?;
        match event.decode::<CatalogEntry>(&self.upcasters)? {
            CatalogEvent::Registered {
                kind,
                owner,
                definition,
            } => {
                let d = Definition::of(&definition)?;
                let statement = tx.prepare_cached(INSERT_ENTRY).await?;
                tx.execute(
                    &statement,
                    &[
                        &id,
                        &definition.name,
                        &definition.description,
                        &variant_name(&kind),
                        &d.transport,
                        &d.runtime,
                        &d.config_schema,
                        &d.resources,
                        &1_i64,
                        &owner,
                        &event.recorded_at,
                        &event.position,
                        &d.gateway,
                        &d.tools,
                    ],
                )
                .await?;
            }
            CatalogEvent::Updated {
                version,
                definition,
                ..
            } => {
                let d = Definition::of(&definition)?;
                let statement = tx.prepare_cached(UPDATE_ENTRY).await?;
                tx.execute(
                    &statement,
                    &[
                        &id,
                        &definition.name,
                        &definition.description,
                        &d.transport,
                        &d.runtime,
                        &d.config_schema,
                        &d.resources,
                        &i64::from(version),
                        &event.recorded_at,
                        &event.position,
                        &d.gateway,
                        &d.tools,
                    ],
                )
                .await?;
                if d.tools.is_none() {
                    return Ok(Some(id));
                }
            }
            CatalogEvent::Removed => {
                let (entry, servers) = tokio::try_join!(
                    tx.prepare_cached(DELETE_ENTRY),
                    tx.prepare_cached(DELETE_ENTRY_SERVERS)
                )?;
                tx.execute(&entry, &[&id]).await?;
                tx.execute(&servers, &[&id]).await?;
            }
            visibility @ (CatalogEvent::Published | CatalogEvent::Unpublished) => {
                let published = visibility == CatalogEvent::Published;
                let statement = tx.prepare_cached(SET_PUBLISHED).await?;
                tx.execute(
                    &statement,
                    &[&id, &published, &event.recorded_at, &event.position],
                )
                .await?;
            }
        }
        Ok(None)
    }

    /// Notes which entry a new server instantiates and what tools servers report, for
    /// [`ServerTools::flush`]. Only those two server events matter here: the others are
    /// not even decoded.
    fn note_server(
        &self,
        pending: &mut ServerTools,
        event: &StoredEvent,
    ) -> Result<(), StoreError> {
        if !matches!(
            event.event_type.as_str(),
            "ServerCreated" | "ServerToolsDiscovered"
        ) {
            return Ok(());
        }
        let server_id = aggregate_uuid(event)?;
        match event.decode::<Server>(&self.upcasters)? {
            ServerEvent::Created { catalog_id, .. } => {
                pending
                    .created
                    .push((server_id, catalog_id, event.position));
            }
            ServerEvent::ToolsDiscovered { tools } => {
                // A later discovery in the same batch replaces an earlier one.
                pending
                    .tools
                    .insert(server_id, (to_json(&tools)?, event.position));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Server changes gathered across a run of server events, written with one multi-row
/// statement each.
#[derive(Default)]
struct ServerTools {
    created: Vec<(Uuid, Uuid, i64)>,
    tools: BTreeMap<Uuid, (serde_json::Value, i64)>,
}

impl ServerTools {
    /// Writes what was gathered (new servers first, then their tools); returns the
    /// entries whose tool union may have changed.
    async fn flush(&mut self, tx: &Transaction<'_>) -> Result<BTreeSet<Uuid>, StoreError> {
        let mut retool = BTreeSet::new();
        if !self.created.is_empty() {
            let (servers, catalogs, positions): (Vec<Uuid>, Vec<Uuid>, Vec<i64>) =
                std::mem::take(&mut self.created).into_iter().fold(
                    (Vec::new(), Vec::new(), Vec::new()),
                    |(mut s, mut c, mut p), (server, catalog, position)| {
                        s.push(server);
                        c.push(catalog);
                        p.push(position);
                        (s, c, p)
                    },
                );
            let statement = tx.prepare_cached(INSERT_SERVERS).await?;
            tx.execute(&statement, &[&servers, &catalogs, &positions])
                .await?;
        }
        if !self.tools.is_empty() {
            let mut servers = Vec::with_capacity(self.tools.len());
            let mut tools = Vec::with_capacity(self.tools.len());
            let mut positions = Vec::with_capacity(self.tools.len());
            for (server, (list, position)) in std::mem::take(&mut self.tools) {
                servers.push(server);
                tools.push(list);
                positions.push(position);
            }
            let statement = tx.prepare_cached(UPDATE_SERVER_TOOLS).await?;
            for row in tx
                .query(&statement, &[&servers, &tools, &positions])
                .await?
            {
                retool.insert(row.try_get(0)?);
            }
        }
        Ok(retool)
    }
}

impl Default for CatalogProjector {
    fn default() -> Self {
        Self::new()
    }
}

impl Rebuildable for CatalogProjector {
    fn for_copy() -> Self {
        Self {
            deferred: Some(Mutex::default()),
            ..Self::new()
        }
    }

    async fn settle(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let retool = match &self.deferred {
            Some(deferred) => std::mem::take(
                &mut *deferred
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            ),
            None => BTreeSet::new(),
        };
        recompute_tools(tx, retool).await
    }
}

/// Recomputes the tools of the entries `retool`.
async fn recompute_tools(tx: &Transaction<'_>, retool: BTreeSet<Uuid>) -> Result<(), StoreError> {
    if retool.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = retool.into_iter().collect();
    let statement = tx.prepare_cached(RECOMPUTE_TOOLS).await?;
    tx.execute(&statement, &[&ids]).await?;
    Ok(())
}

/// The JSON columns of a definition.
struct Definition {
    transport: String,
    runtime: serde_json::Value,
    config_schema: serde_json::Value,
    resources: serde_json::Value,
    gateway: serde_json::Value,
    /// The tools the definition itself declares (a registered API's operations), which
    /// are known before any server reports them.
    tools: Option<serde_json::Value>,
}

impl Definition {
    fn of(d: &CatalogDefinition) -> Result<Self, StoreError> {
        Ok(Self {
            transport: variant_name(&d.transport),
            runtime: to_json(&d.runtime)?,
            config_schema: to_json(&d.config_schema)?,
            resources: to_json(&d.resources)?,
            gateway: to_json(&d.gateway)?,
            tools: declared_tools(d).map(|tools| to_json(&tools)).transpose()?,
        })
    }
}

/// A registered API's tools, from its document: the same the servers of this version
/// will report, ordered by name as reported tools are. An entry that was valid when
/// registered stays so, and one that is not (an older rule) declares none.
fn declared_tools(d: &CatalogDefinition) -> Option<Vec<Tool>> {
    let RuntimeSpec::OpenApi {
        document,
        operations: chosen,
        ..
    } = &d.runtime
    else {
        return None;
    };
    let mut tools: Vec<Tool> = operations(document, chosen)
        .map(|operations| {
            operations
                .into_iter()
                .map(|o| Tool::kept(o.tool, Some(o.description), o.input_schema))
                .collect()
        })
        .unwrap_or_default();
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    Some(tools)
}

impl Projector for CatalogProjector {
    fn name(&self) -> &str {
        NAME
    }

    async fn apply(&self, tx: &Transaction<'_>, events: &[StoredEvent]) -> Result<(), StoreError> {
        let mut retool = BTreeSet::new();
        let mut pending = ServerTools::default();
        for event in events {
            match event.aggregate_type.as_str() {
                CatalogEntry::TYPE => {
                    // Removing an entry drops its servers' rows: earlier server events
                    // must be written first.
                    retool.extend(pending.flush(tx).await?);
                    retool.extend(self.apply_catalog(tx, event).await?);
                }
                Server::TYPE => self.note_server(&mut pending, event)?,
                _ => {}
            }
        }
        retool.extend(pending.flush(tx).await?);
        match &self.deferred {
            Some(deferred) => deferred
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(retool),
            None => recompute_tools(tx, retool).await?,
        }
        Ok(())
    }
}
