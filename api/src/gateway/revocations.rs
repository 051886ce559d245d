//! Sessions end with their credential: when the log says a key was revoked or a user
//! disabled or forgotten, their open gateway sessions (and their notification streams)
//! are closed at once, not at their next request.

use std::sync::Arc;

use berth_domain::user::User;
use berth_infrastructure::feed::fanout::{receive, EventFanout, Received};
use cqrs_es::Aggregate;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::Gateway;

/// Follows the fan-out until `shutdown`.
pub fn spawn(
    gateway: Arc<Gateway>,
    fanout: &EventFanout,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut events = fanout.subscribe();
    tokio::spawn(async move {
        while let Some(received) = receive(&mut events, &mut shutdown).await {
            // Missed events are missed revocations only for sessions whose next request
            // is refused anyway: every request is authenticated again.
            let Received::Event(event) = received else {
                continue;
            };
            if event.aggregate_type != User::TYPE {
                continue;
            }
            let Ok(user_id) = event.aggregate_id.parse::<Uuid>() else {
                continue;
            };
            match event.event_type.as_str() {
                "ApiKeyRevoked" => {
                    let key = event.payload_field("key_id").and_then(|k| k.parse().ok());
                    if let Some(key_id) = key {
                        gateway.end_sessions_of(user_id, Some(key_id)).await;
                    }
                }
                "UserDisabled" | "UserForgotten" => gateway.end_sessions_of(user_id, None).await,
                _ => {}
            }
        }
    })
}
