//! `AuditProjector`: one `audit_log` row per event, written for a whole batch with one
//! multi-row insert.

use std::collections::{BTreeSet, HashMap};

use berth_domain::bulk::BulkOperation;
use berth_domain::catalog::CatalogEntry;
use berth_domain::keyring::KeyRing;
use berth_domain::server::Server;
use berth_domain::upcasting::upcasters;
use berth_domain::user::User;
use berth_infrastructure::feed::StoredEvent;
use berth_infrastructure::subscription::Subscriber;
use berth_infrastructure::StoreError;
use chrono::{DateTime, Utc};
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::summary::{summarize, targets_of, Decoded, Names, Target};
use crate::codec::lock_checkpoint;

/// The audit projection's subscription name.
pub const NAME: &str = "audit";

/// The tables this projection owns (rebuilt, switched and reset together).
pub const TABLES: &[&str] = &["audit_log", "audit_target_names"];

/// The actor recorded for events whose metadata names none.
pub const UNKNOWN_ACTOR: &str = "unknown";

const INSERT: &str = "INSERT INTO audit_log (position, event_id, at, actor, action, \
     target_type, target_id, summary, request_id, correlation_id, causation_id) \
     SELECT * FROM UNNEST($1::int8[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])";

const LOAD_NAMES: &str = "SELECT n.target_type, n.target_id, n.name FROM audit_target_names n \
     JOIN UNNEST($1::text[], $2::text[]) AS t(target_type, target_id) \
     USING (target_type, target_id)";

const SAVE_NAMES: &str = "INSERT INTO audit_target_names (target_type, target_id, name) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) \
     ON CONFLICT (target_type, target_id) DO UPDATE SET name = excluded.name";

const RESET: &str = "TRUNCATE audit_log, audit_target_names";

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

/// `<aggregate type>.<payload type tag>`, e.g. `server.start_requested`.
pub(crate) fn action(event: &StoredEvent) -> String {
    let tag = event
        .payload
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or(&event.event_type);
    format!("{}.{tag}", event.aggregate_type)
}

async fn load_names(tx: &Transaction<'_>, targets: BTreeSet<Target>) -> Result<Names, StoreError> {
    if targets.is_empty() {
        return Ok(Names::default());
    }
    let (types, ids): (Vec<String>, Vec<String>) = targets.into_iter().unzip();
    let statement = tx.prepare_cached(LOAD_NAMES).await?;
    let mut known = HashMap::new();
    for row in tx.query(&statement, &[&types, &ids]).await? {
        known.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
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

/// Column arrays for `INSERT`.
#[derive(Default)]
struct Rows<'a> {
    position: Vec<i64>,
    event_id: Vec<Uuid>,
    at: Vec<DateTime<Utc>>,
    actor: Vec<&'a str>,
    action: Vec<String>,
    target_type: Vec<&'a str>,
    target_id: Vec<&'a str>,
    summary: Vec<String>,
    request_id: Vec<Option<&'a str>>,
    correlation_id: Vec<Option<&'a str>>,
    causation_id: Vec<Option<&'a str>>,
}

impl<'a> Rows<'a> {
    fn push(&mut self, event: &'a StoredEvent, summary: String) {
        self.position.push(event.position);
        self.event_id.push(event.event_id);
        self.at.push(event.recorded_at);
        self.actor
            .push(event.meta("actor").unwrap_or(UNKNOWN_ACTOR));
        self.action.push(action(event));
        self.target_type.push(&event.aggregate_type);
        self.target_id.push(&event.aggregate_id);
        self.summary.push(summary);
        self.request_id.push(event.meta("request_id"));
        self.correlation_id.push(event.meta("correlation_id"));
        self.causation_id.push(event.meta("causation_id"));
    }

    async fn insert(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let statement = tx.prepare_cached(INSERT).await?;
        tx.execute(
            &statement,
            &[
                &self.position,
                &self.event_id,
                &self.at,
                &self.actor,
                &self.action,
                &self.target_type,
                &self.target_id,
                &self.summary,
                &self.request_id,
                &self.correlation_id,
                &self.causation_id,
            ],
        )
        .await?;
        Ok(())
    }
}

impl Subscriber for AuditProjector {
    fn name(&self) -> &str {
        NAME
    }

    async fn apply(&self, tx: &Transaction<'_>, events: &[StoredEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let decoded: Vec<Decoded> = events.iter().map(|e| self.decode(e)).collect();
        let targets = events
            .iter()
            .zip(&decoded)
            .flat_map(|(e, d)| targets_of(e, d))
            .collect();
        let mut names = load_names(tx, targets).await?;
        let mut rows = Rows::default();
        for (event, decoded) in events.iter().zip(&decoded) {
            let summary = summarize(event, decoded, &mut names);
            rows.push(event, summary);
        }
        rows.insert(tx).await?;
        save_names(tx, names).await
    }

    async fn reset(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        lock_checkpoint(tx, NAME).await?;
        tx.batch_execute(RESET).await?;
        Ok(())
    }
}
