//! Upcasters that turn stored older event shapes into the current ones on read.
//!
//! Events are never rewritten in the store; a change of an event's shape bumps its
//! `event_version` and adds an upcaster here. Upcasters run in order, each lifting one
//! event type from the versions below its own to its own, so an event stored at any old
//! version reaches the current shape through the chain.
//!
//! | event | version | change |
//! | --- | --- | --- |
//! | `ApiKeyCreated` | 2 | the bare `hash` string became `digest: {algorithm, value}` |

use cqrs_es::persist::{EventUpcaster, SemanticVersionEventUpcaster, SerializedEvent};
use serde_json::{json, Value};

/// The current version of `ApiKeyCreated`.
pub const API_KEY_CREATED_VERSION: &str = "2";

/// Every upcaster Berth applies when loading events, oldest shape first.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(SemanticVersionEventUpcaster::new(
        "ApiKeyCreated",
        API_KEY_CREATED_VERSION,
        Box::new(api_key_digest_with_algorithm),
    ))]
}

/// `ApiKeyCreated` v1 → v2: version 1 recorded `"hash": "<hex>"`, always an HMAC-SHA-256;
/// version 2 names the algorithm beside the value.
/// Whether any upcaster of `chain` takes an event of this type and version: when none
/// does, readers can decode the stored payload as it is, without copying it.
pub fn needs_upcast(chain: &[Box<dyn EventUpcaster>], event_type: &str, version: &str) -> bool {
    chain.iter().any(|u| u.can_upcast(event_type, version))
}

/// `event` brought to its current shape: every upcaster of `chain` that takes it, in order.
pub fn upcast(chain: &[Box<dyn EventUpcaster>], mut event: SerializedEvent) -> SerializedEvent {
    for upcaster in chain {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            event = upcaster.upcast(event);
        }
    }
    event
}

fn api_key_digest_with_algorithm(mut payload: Value) -> Value {
    if let Value::Object(fields) = &mut payload {
        if let Some(hash) = fields.remove("hash") {
            fields.insert(
                "digest".into(),
                json!({ "algorithm": "hmac-sha256", "value": hash }),
            );
        }
    }
    payload
}

#[cfg(test)]
mod tests {
    use cqrs_es::persist::SerializedEvent;
    use cqrs_es::DomainEvent;
    use uuid::Uuid;

    use super::*;
    use crate::user::{KeyDigest, UserEvent};

    fn stored(event_type: &str, version: &str, payload: Value) -> SerializedEvent {
        SerializedEvent::new(
            Uuid::nil().to_string(),
            2,
            "user".into(),
            event_type.into(),
            version.into(),
            payload,
            json!({}),
        )
    }

    fn upcast(event: SerializedEvent) -> SerializedEvent {
        super::upcast(&upcasters(), event)
    }

    #[test]
    fn a_version_1_key_event_reads_as_the_current_shape() {
        let v1 = stored(
            "ApiKeyCreated",
            "1",
            json!({"type": "key_created", "key_id": Uuid::from_u128(9), "name": "ci",
                   "prefix": "berth_0123abcd", "hash": "ab12"}),
        );
        let current = upcast(v1);
        let event: UserEvent = serde_json::from_value(current.payload).expect("decodes");
        assert_eq!(
            event,
            UserEvent::KeyCreated {
                key_id: Uuid::from_u128(9),
                name: "ci".into(),
                prefix: "berth_0123abcd".into(),
                digest: KeyDigest::hmac_sha256("ab12".into()),
                expires_at: None,
                profiles: Default::default(),
            }
        );
        assert_eq!(current.event_version, "2.0.0");
    }

    #[test]
    fn current_events_and_other_types_pass_unchanged() {
        let event = UserEvent::KeyCreated {
            key_id: Uuid::from_u128(1),
            name: "n".into(),
            prefix: "berth_0123abcd".into(),
            digest: KeyDigest::hmac_sha256("cd34".into()),
            expires_at: None,
            profiles: Default::default(),
        };
        let payload = serde_json::to_value(&event).expect("serialises");
        let v2 = stored("ApiKeyCreated", &event.event_version(), payload.clone());
        assert_eq!(upcast(v2).payload, payload);
        let other = stored("UserCreated", "1", json!({"hash": "not a key"}));
        assert_eq!(upcast(other).payload, json!({"hash": "not a key"}));
    }
}
