//! Small conversions shared by the projectors.

use berth_infrastructure::feed::StoredEvent;
use berth_infrastructure::StoreError;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// The event's aggregate id as a UUID; every Berth aggregate is keyed by one.
pub(crate) fn aggregate_uuid(event: &StoredEvent) -> Result<Uuid, StoreError> {
    Uuid::parse_str(&event.aggregate_id).map_err(|_| {
        StoreError::Malformed(format!(
            "event {}: aggregate id `{}` is not a UUID",
            event.position, event.aggregate_id
        ))
    })
}

/// The serialised name of a unit enum variant (`stdio`, `custom`, `healthy`, ...).
pub(crate) fn variant_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// `value` as JSON for a `jsonb` column.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::Malformed(format!("to JSON: {e}")))
}

/// `value` read back from a `jsonb` column.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, StoreError> {
    serde_json::from_value(value)
        .map_err(|e| StoreError::Malformed(format!("read model JSON: {e}")))
}
