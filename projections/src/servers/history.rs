//! A server's history: each of its events, oldest first, with who did it and what it
//! changed, field by field, between the states folded before and after it. Secret
//! values never appear: a secret set, changed or removed shows as masked.

use std::collections::{BTreeMap, BTreeSet};

use berth_domain::server::{SealedSecret, Server};
use berth_infrastructure::feed::StoredEvent;
use berth_infrastructure::stream::{stream_length, StreamEnd};
use berth_infrastructure::StoreError;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::query::SECRET_MASK;
use super::replay::{Replay, ServerEvents};
use crate::audit::{action, event_link, UNKNOWN_ACTOR};
use crate::codec::to_json;
use crate::page::{Page, PageRequest};

/// One event of a server's history.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HistoryEntry {
    /// The event's global position.
    pub position: i64,
    /// Its place in the server's stream (1, 2, 3 …).
    pub sequence: i64,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// Who acted (`user:NAME`, `system:NAME`, or `unknown`).
    pub actor: String,
    /// E.g. `ServerConfigUpdated`.
    pub event_type: String,
    /// As in the audit log, e.g. `server.config_updated`.
    pub action: String,
    /// The request that caused it.
    pub request_id: Option<String>,
    /// The unit of work it belongs to (e.g. a bulk operation).
    pub correlation_id: Option<String>,
    /// The event itself: `/api/v1/events/{position}`.
    pub event: String,
    /// What it changed: the server's fields (`name`, `state`, `enabled`, `health`, …) in
    /// a fixed order, then `config.KEY` and `secrets.KEY` by key; on deletion only
    /// `deleted`.
    pub changes: Vec<FieldChange>,
}

/// One field's value before and after an event (`null` where it had none).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldChange {
    /// `state`, `config.API_URL`, `secrets.API_TOKEN`, …
    pub field: String,
    /// The value before; a secret shows as `"********"`.
    pub from: Value,
    /// The value after; a secret shows as `"********"`.
    pub to: Value,
}

/// The fields compared one by one, in the order their changes are listed; `config` and
/// `secrets` follow, key by key. The event's own place (`version`, `position`,
/// `updated_at`) changes every time and is the entry itself, so it is left out.
const FIELDS: [&str; 18] = [
    "name",
    "owner",
    "catalog_id",
    "catalog_version",
    "created_at",
    "state",
    "enabled",
    "restart_pending",
    "delete_pending",
    "health",
    "restart_policy",
    "restart_attempts",
    "container_id",
    "node",
    "endpoint",
    "last_error",
    "tools",
    "sharing",
];

/// A folded state, ready to compare.
struct Snapshot {
    view: Map<String, Value>,
    sealed: BTreeMap<String, SealedSecret>,
}

fn snapshot(replay: &Replay) -> Result<Option<Snapshot>, StoreError> {
    let Some(view) = replay.view()? else {
        return Ok(None);
    };
    let view = match to_json(&view)? {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    Ok(Some(Snapshot {
        view,
        sealed: replay.sealed().clone(),
    }))
}

fn change(field: String, from: Value, to: Value) -> FieldChange {
    FieldChange { field, from, to }
}

/// What differs between two folded states.
fn changes(before: Option<&Snapshot>, after: Option<&Snapshot>) -> Vec<FieldChange> {
    if let (Some(_), None) = (before, after) {
        return vec![change("deleted".into(), false.into(), true.into())];
    }
    let field = |s: Option<&Snapshot>, name: &str| {
        s.and_then(|s| s.view.get(name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut out = Vec::new();
    for name in FIELDS {
        let (from, to) = (field(before, name), field(after, name));
        if from != to {
            out.push(change(name.into(), from, to));
        }
    }
    let config = |s: Option<&Snapshot>| match s.and_then(|s| s.view.get("config")) {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    let (old, new) = (config(before), config(after));
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys {
        let from = old.get(key).cloned().unwrap_or(Value::Null);
        let to = new.get(key).cloned().unwrap_or(Value::Null);
        if from != to {
            out.push(change(format!("config.{key}"), from, to));
        }
    }
    let empty = BTreeMap::new();
    let old = before.map_or(&empty, |s| &s.sealed);
    let new = after.map_or(&empty, |s| &s.sealed);
    let masked = |s: Option<&SealedSecret>| match s {
        Some(_) => Value::String(SECRET_MASK.into()),
        None => Value::Null,
    };
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys {
        let (from, to) = (old.get(key), new.get(key));
        // Sealing the same value twice gives different ciphertexts, so any new seal
        // counts as a change, like the domain counts it.
        if from != to {
            out.push(change(format!("secrets.{key}"), masked(from), masked(to)));
        }
    }
    out
}

fn entry(stored: &StoredEvent, changes: Vec<FieldChange>) -> HistoryEntry {
    let metadata = stored.meta();
    let meta = |key: &str| metadata.get(key).map(str::to_string);
    HistoryEntry {
        position: stored.position,
        sequence: stored.sequence,
        at: stored.recorded_at,
        actor: metadata.get("actor").unwrap_or(UNKNOWN_ACTOR).to_string(),
        event_type: stored.event_type.clone(),
        action: action(stored),
        request_id: meta("request_id"),
        correlation_id: meta("correlation_id"),
        event: event_link(stored.position),
        changes,
    }
}

/// One page of server `id`'s history, oldest first, or `None` when it has no events.
/// Events before the page are folded but not described, so any page costs one pass
/// over the events up to its end, in batches.
pub async fn server_history(
    client: &impl GenericClient,
    id: Uuid,
    page: PageRequest,
) -> Result<Option<Page<HistoryEntry>>, StoreError> {
    let total = stream_length(client, Server::TYPE, &id.to_string()).await?;
    if total == 0 {
        return Ok(None);
    }
    let first = page.offset();
    let end = first.saturating_add(page.page_size);
    let mut replay = Replay::new(id);
    let mut events = ServerEvents::new(id, StreamEnd::Latest);
    let mut items = Vec::new();
    let mut index: i64 = 0;
    'read: while let Some(batch) = events.next_batch(client).await? {
        for stored in &batch {
            if index >= end {
                break 'read;
            }
            if index >= first {
                let before = snapshot(&replay)?;
                replay.apply(stored)?;
                let after = snapshot(&replay)?;
                items.push(entry(stored, changes(before.as_ref(), after.as_ref())));
            } else {
                replay.apply(stored)?;
            }
            index += 1;
        }
    }
    Ok(Some(Page {
        items,
        total,
        page: page.page,
        page_size: page.page_size,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn state(view: Value, sealed: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            view: match view {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            sealed: sealed
                .iter()
                .map(|(k, c)| {
                    (
                        (*k).to_string(),
                        SealedSecret {
                            key_id: "dk-1".into(),
                            nonce: "bm9uY2U=".into(),
                            ciphertext: (*c).to_string(),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn changes_list_fields_then_config_then_masked_secrets() {
        let before = state(
            json!({"name": "a", "state": "stopped", "config": {"URL": "x", "OLD": "1"}}),
            &[("TOKEN", "c1"), ("GONE", "c2"), ("SAME", "c3")],
        );
        let after = state(
            json!({"name": "a", "state": "pending", "config": {"URL": "y", "NEW": "2"}}),
            &[("TOKEN", "c9"), ("ADDED", "c4"), ("SAME", "c3")],
        );
        let found = changes(Some(&before), Some(&after));
        let shown: Vec<(String, Value, Value)> =
            found.into_iter().map(|c| (c.field, c.from, c.to)).collect();
        assert_eq!(
            shown,
            vec![
                ("state".into(), json!("stopped"), json!("pending")),
                ("config.NEW".into(), Value::Null, json!("2")),
                ("config.OLD".into(), json!("1"), Value::Null),
                ("config.URL".into(), json!("x"), json!("y")),
                ("secrets.ADDED".into(), Value::Null, json!(SECRET_MASK)),
                ("secrets.GONE".into(), json!(SECRET_MASK), Value::Null),
                (
                    "secrets.TOKEN".into(),
                    json!(SECRET_MASK),
                    json!(SECRET_MASK)
                ),
            ]
        );
        let text = serde_json::to_string(&changes(Some(&before), Some(&after))).unwrap_or_default();
        assert!(!text.contains("c9") && !text.contains("c1"), "{text}");
    }

    #[test]
    fn creation_lists_every_value_and_deletion_says_so() {
        let created = state(json!({"name": "a", "container_id": null}), &[("T", "c")]);
        let fields: Vec<String> = changes(None, Some(&created))
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, ["name", "secrets.T"]);
        let deleted = changes(Some(&created), None);
        assert_eq!(
            deleted,
            vec![change("deleted".into(), json!(false), json!(true))]
        );
    }
}
