//! `AuditProjector`: one `audit_log` row per event, written for a whole batch with one
//! binary `COPY`.

use berth_domain::bulk::BulkOperation;
use berth_domain::catalog::CatalogEntry;
use berth_domain::keyring::KeyRing;
use berth_domain::server::Server;
use berth_domain::tool_call::ToolCall;
use berth_domain::upcasting::upcasters;
use berth_domain::user::User;
use berth_infrastructure::feed::projector::Projector;
use berth_infrastructure::feed::StoredEvent;
use berth_infrastructure::StoreError;
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use deadpool_postgres::Transaction;
use futures_util::pin_mut;

use super::summary::{summarize, targets_of, Decoded, Names, Targets};
use crate::blue_green::Rebuildable;
use crate::copy_rows::CopyRows;

/// The audit projection's subscription name.
pub const NAME: &str = "audit";

/// The tables this projection owns (rebuilt, switched and reset together).
pub const TABLES: &[&str] = &["audit_log", "audit_target_names"];

/// The actor recorded for events whose metadata names none.
pub const UNKNOWN_ACTOR: &str = "unknown";

// A batch's rows go in with one binary COPY: PostgreSQL writes them to the table in
// multi-row steps, with far less work per row than an INSERT of the same rows.
const COPY: &str = "COPY audit_log (position, event_id, at, actor, action, target_type, \
     target_id, summary, request_id, correlation_id, causation_id) FROM STDIN (FORMAT binary)";

/// The columns of `COPY`.
const COPY_COLUMNS: i16 = 11;

// One primary-key lookup per target, whatever the planner thinks of the table's size: a
// plain join may be planned as a scan of every name while the table is young (a rebuild
// fills it from nothing), and a plan cached then stays.
const LOAD_NAMES: &str = "SELECT t.target_type, t.target_id, n.name \
     FROM UNNEST($1::text[], $2::text[]) AS t(target_type, target_id) \
     CROSS JOIN LATERAL (SELECT n.name FROM audit_target_names n \
         WHERE n.target_type = t.target_type AND n.target_id = t.target_id LIMIT 1) n";

const SAVE_NAMES: &str = "INSERT INTO audit_target_names (target_type, target_id, name) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) \
     ON CONFLICT (target_type, target_id) DO UPDATE SET name = excluded.name";

/// Projects every event, of every aggregate, into `audit_log`: who did what to which
/// target, when, in answer to which request.
pub struct AuditProjector {
    upcasters: Vec<Box<dyn EventUpcaster>>,
}

impl AuditProjector {
    /// A projector decoding events with the domain's upcasters.
    pub fn new() -> Self {
        Self {
            upcasters: upcasters(),
        }
    }

    fn decode(&self, event: &StoredEvent) -> Decoded {
        let decoded = match event.aggregate_type.as_str() {
            Server::TYPE => event.decode::<Server>(&self.upcasters).map(Decoded::Server),
            CatalogEntry::TYPE => event
                .decode::<CatalogEntry>(&self.upcasters)
                .map(Decoded::Catalog),
            BulkOperation::TYPE => event
                .decode::<BulkOperation>(&self.upcasters)
                .map(Decoded::Bulk),
            User::TYPE => event.decode::<User>(&self.upcasters).map(Decoded::User),
            KeyRing::TYPE => event
                .decode::<KeyRing>(&self.upcasters)
                .map(Decoded::KeyRing),
            ToolCall::TYPE => event
                .decode::<ToolCall>(&self.upcasters)
                .map(Decoded::ToolCall),
            _ => Ok(Decoded::Other),
        };
        // The trail must stay complete: an event that does not decode is still recorded,
        // with a generic summary.
        decoded.unwrap_or_else(|e| {
            tracing::warn!(position = event.position, error = %e, "audit: event does not decode");
            Decoded::Other
        })
    }
}

impl Default for AuditProjector {
    fn default() -> Self {
        Self::new()
    }
}

impl Rebuildable for AuditProjector {
    // One row per event, written with COPY and never read back while building.
    const APPEND_ONLY: &'static [&'static str] = &["audit_log"];
}

/// `<aggregate type>.<payload type tag>`, e.g. `server.start_requested`.
pub(crate) fn action(event: &StoredEvent) -> String {
    let tag = event.payload_tag();
    action_name(&event.aggregate_type, tag.as_deref(), &event.event_type)
}

/// `<aggregate type>.<tag>`, or `<aggregate type>.<event type>` for a payload without
/// a text `type`.
fn action_name(aggregate_type: &str, tag: Option<&str>, event_type: &str) -> String {
    let tag = tag.unwrap_or(event_type);
    let mut action = String::with_capacity(aggregate_type.len() + 1 + tag.len());
    action.push_str(aggregate_type);
    action.push('.');
    action.push_str(tag);
    action
}

async fn load_names(tx: &Transaction<'_>, targets: &Targets<'_>) -> Result<Names, StoreError> {
    if targets.is_empty() {
        return Ok(Names::default());
    }
    let types: Vec<&str> = targets.iter().map(|(t, _)| t.as_ref()).collect();
    let ids: Vec<&str> = targets.iter().map(|(_, id)| id.as_ref()).collect();
    let statement = tx.prepare_cached(LOAD_NAMES).await?;
    let rows = tx.query(&statement, &[&types, &ids]).await?;
    let mut known = Vec::with_capacity(rows.len());
    for row in rows {
        known.push(((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?));
    }
    Ok(Names::new(known))
}

async fn save_names(tx: &Transaction<'_>, names: Names) -> Result<(), StoreError> {
    let changed = names.into_changed();
    if changed.is_empty() {
        return Ok(());
    }
    let mut types = Vec::with_capacity(changed.len());
    let mut ids = Vec::with_capacity(changed.len());
    let mut values = Vec::with_capacity(changed.len());
    for ((t, id), name) in changed {
        types.push(t);
        ids.push(id);
        values.push(name);
    }
    let statement = tx.prepare_cached(SAVE_NAMES).await?;
    tx.execute(&statement, &[&types, &ids, &values]).await?;
    Ok(())
}

/// Adds the `audit_log` row of `event`, with `summary`, to `rows`.
fn copy_row(rows: &mut CopyRows, event: &StoredEvent, summary: &str) -> Result<(), StoreError> {
    let meta = event.meta();
    rows.row()
        .int8(event.position)
        .uuid(&event.event_id)
        .timestamptz(&event.recorded_at)
        .text(meta.get("actor").unwrap_or(UNKNOWN_ACTOR))?
        .text(&action(event))?
        .text(&event.aggregate_type)?
        .text(&event.aggregate_id)?
        .text(summary)?
        .opt_text(meta.get("request_id"))?
        .opt_text(meta.get("correlation_id"))?
        .opt_text(meta.get("causation_id"))?;
    Ok(())
}

impl Projector for AuditProjector {
    fn name(&self) -> &str {
        NAME
    }

    async fn apply(&self, tx: &Transaction<'_>, events: &[StoredEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let decoded: Vec<Decoded> = events.iter().map(|e| self.decode(e)).collect();
        let mut targets = Targets::new();
        for (event, decoded) in events.iter().zip(&decoded) {
            targets_of(event, decoded, &mut targets);
        }
        let mut names = load_names(tx, &targets).await?;
        // Each row goes out as soon as it is summarised, so PostgreSQL stores the first
        // rows while the last are still being written.
        let copy = tx.prepare_cached(COPY).await?;
        let sink = tx.copy_in(&copy).await?;
        pin_mut!(sink);
        let mut rows = CopyRows::new(COPY_COLUMNS);
        for (event, decoded) in events.iter().zip(&decoded) {
            let summary = summarize(event, decoded, &mut names);
            copy_row(&mut rows, event, &summary)?;
            rows.send_full(&mut sink).await?;
        }
        rows.finish(sink).await?;
        save_names(tx, names).await
    }
}
