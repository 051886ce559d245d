//! How far each projection has got, for `/readyz`, metrics and operators.

use berth_infrastructure::feed::{head_position, Checkpoint};
use berth_infrastructure::subscription::checkpoint_of;
use berth_infrastructure::StoreError;
use deadpool_postgres::{GenericClient, Pool};
use serde::Serialize;
use utoipa::ToSchema;

use crate::PROJECTION_NAMES;

/// One projection's progress.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProjectionStatus {
    /// The projection (`catalog`, `servers`, `audit`, `bulk`).
    pub name: String,
    /// Global position of the last event it applied (0 before the first).
    pub position: i64,
    /// The highest position in the event store.
    pub head: i64,
    /// Age in seconds of the oldest event it has not applied yet; 0 when caught up.
    pub lag_seconds: f64,
}

// The first unapplied event in feed order is the one the projection waits on; its age is
// the lag, including time spent behind a transaction that has not committed yet.
const LAG: &str = "SELECT greatest(extract(epoch FROM now() - recorded_at), 0)::float8 \
     FROM events WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
     ORDER BY transaction_id, global_position LIMIT 1";

async fn lag_seconds(client: &impl GenericClient, after: Checkpoint) -> Result<f64, StoreError> {
    let statement = client.prepare_cached(LAG).await?;
    let row = client
        .query_opt(
            &statement,
            &[&after.transaction_id.to_string(), &after.position],
        )
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0.0))
}

/// The progress of every projection, in [`PROJECTION_NAMES`] order.
pub async fn status(pool: &Pool) -> Result<Vec<ProjectionStatus>, StoreError> {
    let client = pool.get().await?;
    let mut statuses = Vec::with_capacity(PROJECTION_NAMES.len());
    for name in PROJECTION_NAMES {
        let checkpoint = checkpoint_of(&client, name).await?;
        statuses.push(ProjectionStatus {
            name: name.to_string(),
            position: checkpoint.position,
            head: 0,
            lag_seconds: lag_seconds(&client, checkpoint).await?,
        });
    }
    // Read last, so no projection is ever shown ahead of the head.
    let head = head_position(&client).await?;
    for s in &mut statuses {
        s.head = head;
    }
    Ok(statuses)
}
