//! Which events a caller may see on a live stream: the one place the rule is decided.

use berth_infrastructure::feed::StoredEvent;

use crate::http::auth::Principal;

/// Whether `principal` may see `event` on a live stream: administrators see every
/// event; everyone else the events of streams they own (their servers, custom catalog
/// entries, bulk operations and their own user). Events of streams no user owns
/// (predefined catalog entries, the key ring) are for administrators only.
pub fn visible(principal: &Principal, event: &StoredEvent) -> bool {
    principal.may_see(event.owner.as_deref())
}

#[cfg(test)]
mod tests {
    use berth_application::access::Caller;
    use berth_application::Actor;
    use berth_domain::user::Role;
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::http::auth::Credential;

    fn event(owner: Option<&str>) -> StoredEvent {
        StoredEvent {
            position: 1,
            transaction_id: 1,
            event_id: Uuid::new_v4(),
            aggregate_type: "server".into(),
            aggregate_id: "s".into(),
            sequence: 1,
            event_type: "ServerCreated".into(),
            event_version: "1".into(),
            payload: "{}".into(),
            metadata: r#"{"actor": "user:someone"}"#.into(),
            recorded_at: Utc::now(),
            owner: owner.map(String::from),
        }
    }

    fn principal(name: &str, role: Role) -> Principal {
        Principal {
            caller: Caller {
                actor: Actor::User(name.into()),
                user_id: Uuid::nil(),
                name: name.into(),
                role,
            },
            credential: Credential::ApiKey {
                key_id: Uuid::nil(),
            },
            profiles: Vec::new(),
        }
    }

    #[test]
    fn owners_see_their_streams_and_administrators_everything() {
        let admin = principal("root", Role::Admin);
        let ann = principal("ann", Role::Operator);
        let bob = principal("bob", Role::Viewer);
        for owner in [Some("user:ann"), Some("user:bob"), None] {
            assert!(visible(&admin, &event(owner)));
        }
        assert!(visible(&ann, &event(Some("user:ann"))));
        assert!(!visible(&ann, &event(Some("user:bob"))));
        assert!(!visible(&bob, &event(Some("user:ann"))));
        assert!(!visible(&ann, &event(None)));
    }
}
