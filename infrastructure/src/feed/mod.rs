//! The event feed and everything that follows it: the one stored-event record, the
//! readers, and the one loop its consumers run ([`follow`](mod@follow): projector, follower, fan-out).
//!
//! The feed is the event log in `(transaction_id, global_position)` order, read only
//! below the oldest transaction still open (`pg_snapshot_xmin`), so an event whose
//! transaction commits late can never be skipped by a reader that already moved on.

use std::borrow::Cow;

use berth_domain::upcasting::{needs_upcast, upcast};
use chrono::{DateTime, Utc};
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::Aggregate;
use deadpool_postgres::GenericClient;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::StoreError;

pub mod checkpoints;
pub mod fanout;
pub mod follow;
pub mod follower;
pub mod lock;
pub mod projector;
pub mod wake;

/// A point in the feed: every event at or before it has been seen.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Checkpoint {
    /// The writing transaction's id (`xid8`).
    pub transaction_id: u64,
    /// The event's global position.
    pub position: i64,
}

impl Checkpoint {
    /// Before every event.
    pub const START: Checkpoint = Checkpoint {
        transaction_id: 0,
        position: 0,
    };

    /// Reads a checkpoint from a row whose first two columns are
    /// `transaction_id::text` and `global_position`.
    pub fn from_row(row: &Row) -> Result<Self, StoreError> {
        Ok(Self {
            transaction_id: parse_xid(&row.try_get::<_, String>(0)?)?,
            position: row.try_get(1)?,
        })
    }
}

/// Parses an `xid8` read as text (tokio-postgres has no native type for it).
pub fn parse_xid(text: &str) -> Result<u64, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Malformed(format!("transaction id {text}")))
}

/// One stored event, the one record every reader of the store returns: the feed's
/// subscribers, the live fan-out, the event lists, stream reads and time travel. Its
/// JSON is kept as the text PostgreSQL rendered, so a reader decodes only what it
/// needs, straight into its own types, and skips the rest for the cost of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Global position (unique, increasing in insert order; may have holes).
    pub position: i64,
    /// The writing transaction.
    pub transaction_id: u64,
    /// Unique id, for idempotent consumers.
    pub event_id: Uuid,
    /// `server`, `catalog_entry`, ...
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// 1, 2, 3 ... within the aggregate.
    pub sequence: i64,
    /// E.g. `ServerStartRequested`.
    pub event_type: String,
    /// Payload shape version.
    pub event_version: String,
    /// The event itself, as JSON text.
    pub payload: String,
    /// actor, request_id, correlation_id, causation_id, as JSON text.
    pub metadata: String,
    /// Commit time as the database saw it.
    pub recorded_at: DateTime<Utc>,
    /// Who owns the event's stream (`user:NAME`), when a user does. Filled by the
    /// readers that answer people ([`read_after`], stream reads); `None` from
    /// [`read_feed_after`], whose subscribers follow the whole feed.
    pub owner: Option<String>,
}

/// The columns every reader selects, in [`StoredEvent::from_row`]'s order; `{owner}`
/// is `o.owner` where the query joins `stream_owners`, else `NULL::text`.
macro_rules! event_columns {
    ($owner:literal) => {
        concat!(
            "e.global_position, e.transaction_id::text, e.event_id, e.aggregate_type, ",
            "e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload::text, ",
            "e.metadata::text, e.recorded_at, ",
            $owner
        )
    };
}
pub(crate) use event_columns;

impl StoredEvent {
    /// The checkpoint just after this event.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            transaction_id: self.transaction_id,
            position: self.position,
        }
    }

    /// The metadata's text fields, read without copying them. Metadata that is not a
    /// JSON object has none.
    pub fn meta(&self) -> Metadata<'_> {
        serde_json::from_str(&self.metadata).unwrap_or_default()
    }

    /// The payload's top-level field `key` when it is text, found without decoding the
    /// rest.
    pub fn payload_field(&self, key: &str) -> Option<Cow<'_, str>> {
        use serde::de::DeserializeSeed;
        let mut deserializer = serde_json::Deserializer::from_str(&self.payload);
        Field { key }.deserialize(&mut deserializer).ok().flatten()
    }

    /// The payload's `type` field (the tag of Berth's event enums).
    pub fn payload_tag(&self) -> Option<Cow<'_, str>> {
        self.payload_field("type")
    }

    /// The payload as a JSON value (for showing it whole).
    pub fn payload_value(&self) -> Result<serde_json::Value, StoreError> {
        self.json(&self.payload)
    }

    /// The metadata as a JSON value (for showing it whole).
    pub fn metadata_value(&self) -> Result<serde_json::Value, StoreError> {
        self.json(&self.metadata)
    }

    fn json(&self, text: &str) -> Result<serde_json::Value, StoreError> {
        serde_json::from_str(text)
            .map_err(|e| StoreError::Malformed(format!("event {} is not JSON: {e}", self.position)))
    }

    /// The payload as `A`'s event type, after upcasting older shapes.
    pub fn decode<A: Aggregate>(
        &self,
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> Result<A::Event, StoreError> {
        let malformed = |e: serde_json::Error| {
            StoreError::Malformed(format!(
                "event {} ({} v{}) does not decode: {e}",
                self.position, self.event_type, self.event_version
            ))
        };
        // Most events are stored in their current shape: decode those straight from the
        // text, without a `serde_json::Value` in between.
        if !needs_upcast(upcasters, &self.event_type, &self.event_version) {
            return serde_json::from_str(&self.payload).map_err(malformed);
        }
        let serialized = SerializedEvent::new(
            self.aggregate_id.clone(),
            usize::try_from(self.sequence).unwrap_or_default(),
            self.aggregate_type.clone(),
            self.event_type.clone(),
            self.event_version.clone(),
            serde_json::from_str(&self.payload).map_err(malformed)?,
            serde_json::from_str(&self.metadata).map_err(malformed)?,
        );
        serde_json::from_value(upcast(upcasters, serialized).payload).map_err(malformed)
    }

    /// Reads a row selected with [`event_columns`].
    pub(crate) fn from_row(row: &Row) -> Result<Self, StoreError> {
        // Columns by index: a name lookup per column per row is measurable at the rates
        // rebuilds read.
        Ok(Self {
            position: row.try_get(0)?,
            transaction_id: parse_xid(row.try_get::<_, &str>(1)?)?,
            event_id: row.try_get(2)?,
            aggregate_type: row.try_get(3)?,
            aggregate_id: row.try_get(4)?,
            sequence: row.try_get(5)?,
            event_type: row.try_get(6)?,
            event_version: row.try_get(7)?,
            payload: row.try_get(8)?,
            metadata: row.try_get(9)?,
            recorded_at: row.try_get(10)?,
            owner: row.try_get(11)?,
        })
    }
}

/// What the process manager needs of an event: which stream it touched and the ids
/// its outcomes are caused by and correlated with.
impl From<&StoredEvent> for berth_application::process_manager::EventRef {
    fn from(e: &StoredEvent) -> Self {
        Self {
            aggregate_type: e.aggregate_type.clone(),
            aggregate_id: e.aggregate_id.clone(),
            event_id: e.event_id,
            correlation_id: e.meta().get("correlation_id").and_then(|c| c.parse().ok()),
        }
    }
}

/// Optional filters on the feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedFilter {
    /// Only this aggregate type.
    pub aggregate_type: Option<String>,
    /// Only this aggregate id.
    pub aggregate_id: Option<String>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only events of streams this owner owns.
    pub owner: Option<String>,
}

impl FeedFilter {
    /// Whether `event` passes the filter, as [`read_after`] would decide it.
    pub fn matches(&self, event: &StoredEvent) -> bool {
        fn allows(wanted: &Option<String>, actual: &str) -> bool {
            wanted.as_deref().is_none_or(|w| w == actual)
        }
        allows(&self.aggregate_type, &event.aggregate_type)
            && allows(&self.aggregate_id, &event.aggregate_id)
            && allows(&self.event_type, &event.event_type)
            && self
                .owner
                .as_deref()
                .is_none_or(|w| event.owner.as_deref() == Some(w))
    }
}

const READ_AFTER: &str = concat!(
    "SELECT ",
    event_columns!("o.owner"),
    " FROM events e LEFT JOIN stream_owners o \
       ON o.aggregate_type = e.aggregate_type AND o.aggregate_id = e.aggregate_id \
     WHERE (e.transaction_id, e.global_position) > ($1::text::xid8, $2) \
       AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
       AND ($4::text IS NULL OR e.aggregate_type = $4) \
       AND ($5::text IS NULL OR e.aggregate_id = $5) \
       AND ($6::text IS NULL OR e.event_type = $6) \
       AND ($7::text IS NULL OR o.owner = $7) \
     ORDER BY e.transaction_id, e.global_position \
     LIMIT $3"
);

// The ORDER BY names `e.` explicitly: a bare `transaction_id` would resolve to the text
// alias in the select list and order xids as strings ("1000" before "999").
// The stream's owner row is written in the transaction of the stream's first event, so
// the join always finds it for every committed event of an owned stream.

/// Up to `limit` committed events after `after` in feed order, matching `filter`.
/// Events of transactions that might still commit behind them are held back until
/// they can no longer be overtaken.
pub async fn read_after<C: GenericClient>(
    client: &C,
    after: Checkpoint,
    limit: i64,
    filter: &FeedFilter,
) -> Result<Vec<StoredEvent>, StoreError> {
    let statement = client.prepare_cached(READ_AFTER).await?;
    let rows = client
        .query(
            &statement,
            &[
                &after.transaction_id.to_string(),
                &after.position,
                &limit,
                &filter.aggregate_type,
                &filter.aggregate_id,
                &filter.event_type,
                &filter.owner,
            ],
        )
        .await?;
    rows.iter().map(StoredEvent::from_row).collect()
}

/// The text fields of an event's metadata (`actor`, `request_id`, ...), borrowed from
/// the event where the JSON has no escapes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Metadata<'a> {
    // Every field, its value kept only when it is text.
    fields: Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>,
}

impl Metadata<'_> {
    /// Field `key` when it is text (the last one when the JSON repeats the key).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }
}

impl<'de> Deserialize<'de> for Metadata<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Metadata<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("event metadata")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut fields = Vec::new();
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    fields.push((key.0, map.next_value::<MaybeText<'de>>()?.0));
                }
                Ok(Metadata { fields })
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// Reads one top-level field of a JSON object, kept when it is text.
struct Field<'k> {
    key: &'k str,
}

impl<'de> serde::de::DeserializeSeed<'de> for Field<'_> {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        struct Fields<'k>(&'k str);
        impl<'de> Visitor<'de> for Fields<'_> {
            type Value = Option<Cow<'de, str>>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event payload")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    if key.0 == self.0 {
                        found = map.next_value::<MaybeText<'de>>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(found)
            }
        }
        deserializer.deserialize_map(Fields(self.key))
    }
}

/// A JSON string, borrowed when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match MaybeText::deserialize(deserializer)? {
            MaybeText(Some(text)) => Ok(Text(text)),
            MaybeText(None) => Err(serde::de::Error::custom("expected a string")),
        }
    }
}

/// Any JSON value, kept only when it is a string.
struct MaybeText<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for MaybeText<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = MaybeText<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeText(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaybeText(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(MaybeText(Some(Cow::Owned(v))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeText(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeText(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeText(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeText(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(MaybeText(None))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeText(None))
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MaybeText(None))
            }
        }
        deserializer.deserialize_any(Any)
    }
}

// The same order and snapshot rule as `READ_AFTER`, without the owner (and its join):
// what durable subscribers read.
const READ_FEED_AFTER: &str = concat!(
    "SELECT ",
    event_columns!("NULL::text"),
    " FROM events e \
     WHERE (e.transaction_id, e.global_position) > ($1::text::xid8, $2) \
       AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY e.transaction_id, e.global_position \
     LIMIT $3"
);

/// Up to `limit` committed events after `after` in feed order, as [`read_after`] reads
/// them (the same events, held back by the same rule), for durable subscribers.
pub async fn read_feed_after<C: GenericClient>(
    client: &C,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let statement = client.prepare_cached(READ_FEED_AFTER).await?;
    let rows = client
        .query(
            &statement,
            &[&after.transaction_id.to_string(), &after.position, &limit],
        )
        .await?;
    rows.iter().map(StoredEvent::from_row).collect()
}

/// The checkpoint to resume from for a caller that says it has seen every event up to
/// global position `position` (an `after=` cursor or `Last-Event-ID`): the checkpoint of
/// that event, or of the nearest earlier one when `position` is not an event's.
pub async fn checkpoint_at_position<C: GenericClient>(
    client: &C,
    position: i64,
) -> Result<Checkpoint, StoreError> {
    if position <= 0 {
        return Ok(Checkpoint::START);
    }
    let statement = client
        .prepare_cached(
            "SELECT transaction_id::text, global_position FROM events \
             WHERE global_position <= $1 ORDER BY global_position DESC LIMIT 1",
        )
        .await?;
    match client.query_opt(&statement, &[&position]).await? {
        None => Ok(Checkpoint::START),
        Some(row) => Checkpoint::from_row(&row),
    }
}

/// Whether a subscriber at `checkpoint` has processed the event at `position`. A
/// position with no event yet answers `false`; a hole in positions answers `true` once
/// the checkpoint is past the hole.
pub async fn has_reached<C: GenericClient>(
    client: &C,
    checkpoint: Checkpoint,
    position: i64,
) -> Result<bool, StoreError> {
    if position <= 0 {
        return Ok(true);
    }
    let statement = client
        .prepare_cached("SELECT transaction_id::text FROM events WHERE global_position = $1")
        .await?;
    match client.query_opt(&statement, &[&position]).await? {
        Some(row) => Ok(Checkpoint {
            transaction_id: parse_xid(&row.try_get::<_, String>(0)?)?,
            position,
        } <= checkpoint),
        None => Ok(position <= checkpoint.position),
    }
}

const HEAD_CHECKPOINT: &str = "SELECT transaction_id::text, global_position FROM events \
     WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1";

/// The checkpoint of the last event a feed reader can see now ([`Checkpoint::START`] for
/// an empty store). Every event that becomes readable later comes after it in feed
/// order: transactions below `pg_snapshot_xmin` have all ended, so none of them can
/// still add an event behind it.
pub async fn head_checkpoint<C: GenericClient>(client: &C) -> Result<Checkpoint, StoreError> {
    let statement = client.prepare_cached(HEAD_CHECKPOINT).await?;
    match client.query_opt(&statement, &[]).await? {
        None => Ok(Checkpoint::START),
        Some(row) => Checkpoint::from_row(&row),
    }
}

const OLDEST_OPEN_TRANSACTION: &str =
    "SELECT coalesce(extract(epoch FROM max(now() - xact_start)), 0)::float8 \
     FROM pg_stat_activity \
     WHERE xact_start IS NOT NULL \
       AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL) \
       AND pid <> pg_backend_pid()";

/// Seconds since the oldest transaction that holds an xid or a snapshot began, anywhere
/// in the cluster: feed readers stop below it (`pg_snapshot_xmin`), so it is how long
/// they may be made to wait.
pub async fn oldest_open_transaction_age<C: GenericClient>(client: &C) -> Result<f64, StoreError> {
    let statement = client.prepare_cached(OLDEST_OPEN_TRANSACTION).await?;
    Ok(client.query_one(&statement, &[]).await?.try_get(0)?)
}

/// The highest position stored so far (0 for an empty store).
pub async fn head_position<C: GenericClient>(client: &C) -> Result<i64, StoreError> {
    let row = client
        .query_one("SELECT coalesce(max(global_position), 0) FROM events", &[])
        .await?;
    Ok(row.try_get(0)?)
}

#[cfg(test)]
mod tests {
    use berth_domain::server::Server;
    use serde_json::Value;

    use super::*;

    fn event(payload: &str, metadata: &str) -> StoredEvent {
        StoredEvent {
            position: 1,
            transaction_id: 1,
            event_id: Uuid::nil(),
            aggregate_type: "server".into(),
            aggregate_id: Uuid::nil().to_string(),
            sequence: 1,
            event_type: "ServerRunning".into(),
            event_version: "1".into(),
            payload: payload.into(),
            metadata: metadata.into(),
            recorded_at: DateTime::<Utc>::default(),
            owner: None,
        }
    }

    /// What a JSON value answers for the same JSON.
    fn value_meta<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
        value.get(key).and_then(|v| v.as_str())
    }

    #[test]
    fn metadata_fields_read_as_a_json_value_reads_them() {
        for metadata in [
            r#"{"actor":"user:ann","request_id":"r-1","correlation_id":"c-1"}"#,
            r#"{"actor":5,"request_id":null,"causation_id":["x"]}"#,
            r#"{"actor":"a \"quoted\" name","nested":{"actor":"inner","list":[1,{"a":2}]}}"#,
            r#"{"actor":"first","actor":"last"}"#,
            r#"{"actor":"first","actor":7}"#,
            "null",
            "[1, 2]",
            r#""text""#,
        ] {
            let value: Value = serde_json::from_str(metadata).expect("valid JSON");
            let stored = event("{}", metadata);
            let meta = stored.meta();
            for key in [
                "actor",
                "request_id",
                "correlation_id",
                "causation_id",
                "nested",
            ] {
                assert_eq!(
                    meta.get(key),
                    value_meta(&value, key),
                    "{key} of {metadata}"
                );
            }
        }
    }

    #[test]
    fn a_payload_field_is_found_without_decoding_the_rest() {
        let stored = event(
            r#"{"type":"key_revoked","key_id":"k-1","n":{"key_id":"inner"}}"#,
            "{}",
        );
        assert_eq!(stored.payload_field("key_id").as_deref(), Some("k-1"));
        assert_eq!(stored.payload_field("n"), None);
        assert_eq!(stored.payload_field("missing"), None);
        assert_eq!(event("[1]", "{}").payload_field("key_id"), None);
    }

    #[test]
    fn the_payload_tag_is_its_text_type_field() {
        for payload in [
            r#"{"type":"running"}"#,
            r#"{"owner":"user:ann","config":{"type":"nested"},"type":"created"}"#,
            r#"{"type":3}"#,
            r#"{"type":"first","type":"last"}"#,
            r#"{}"#,
            r#""running""#,
        ] {
            let value: Value = serde_json::from_str(payload).expect("valid JSON");
            let stored = event(payload, "{}");
            assert_eq!(
                stored.payload_tag().as_deref(),
                value_meta(&value, "type"),
                "{payload}"
            );
        }
    }

    #[test]
    fn payloads_decode_from_text_as_from_a_json_value() {
        let payload = r#"{"type":"config_updated","config":{"ORG":"acme \"eu\""},
            "secrets":{},"changed_keys":["config.ORG"]}"#;
        let stored = event(payload, "{}");
        let from_text = stored.decode::<Server>(&[]).expect("decodes");
        let value: Value = serde_json::from_str(payload).expect("valid JSON");
        let from_value: <Server as Aggregate>::Event =
            serde_json::from_value(value).expect("decodes");
        assert_eq!(from_text, from_value);
        let broken = event(r#"{"type":"no_such_event"}"#, "{}");
        assert!(matches!(
            broken.decode::<Server>(&[]),
            Err(StoreError::Malformed(_))
        ));
    }
}
