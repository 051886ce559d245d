//! Events as `GET /api/v1/events` answers them.

use berth_infrastructure::feed::StoredEvent;
use berth_infrastructure::StoreError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// One stored event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventDto {
    /// Global position: unique and increasing in insert order (may have holes).
    pub position: i64,
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
    /// Version of the payload's shape.
    pub event_version: String,
    /// The event itself. Secrets appear only sealed.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// `actor`, `request_id`, `correlation_id`, `causation_id`.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// When it was recorded (RFC 3339, UTC).
    pub recorded_at: DateTime<Utc>,
}

impl TryFrom<&StoredEvent> for EventDto {
    type Error = StoreError;

    fn try_from(e: &StoredEvent) -> Result<Self, StoreError> {
        Ok(Self {
            position: e.position,
            event_id: e.event_id,
            aggregate_type: e.aggregate_type.clone(),
            aggregate_id: e.aggregate_id.clone(),
            sequence: e.sequence,
            event_type: e.event_type.clone(),
            event_version: e.event_version.clone(),
            payload: e.payload_value()?,
            metadata: e.metadata_value()?,
            recorded_at: e.recorded_at,
        })
    }
}

/// A page of the event feed and the cursor to continue from.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventPage {
    /// The events, in commit (feed) order.
    pub events: Vec<EventDto>,
    /// Pass as `after` to read on: the last event's position, or `after` when none came.
    pub next: i64,
}
