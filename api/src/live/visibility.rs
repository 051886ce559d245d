//! Which events a caller may see on a live stream: the one place the rule is decided.

use berth_application::Actor;
use berth_infrastructure::feed::StoredEvent;

use crate::auth::Principal;

/// Whether `principal` may see `event` on a live stream.
///
/// Today the only caller who can authenticate is the administrator, who sees every
/// event. Anyone else sees nothing until a rule for them is written here (when roles
/// arrive: viewers and operators see the events of what they own), so a new kind of
/// principal can never see more than it should by accident.
pub fn visible(principal: &Principal, _event: &StoredEvent) -> bool {
    principal.actor == Actor::admin()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;

    fn event() -> StoredEvent {
        StoredEvent {
            position: 1,
            transaction_id: 1,
            event_id: Uuid::new_v4(),
            aggregate_type: "server".into(),
            aggregate_id: "s".into(),
            sequence: 1,
            event_type: "ServerCreated".into(),
            event_version: "1".into(),
            payload: serde_json::json!({}),
            metadata: serde_json::json!({"actor": "user:someone"}),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn the_administrator_sees_everything_and_nobody_else_anything_yet() {
        let admin = Principal {
            actor: Actor::admin(),
        };
        let other = Principal {
            actor: Actor::User("someone".into()),
        };
        assert!(visible(&admin, &event()));
        assert!(!visible(&other, &event()));
    }
}
