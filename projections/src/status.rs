//! How far each projection has got, for `/readyz`, metrics and operators.

use std::time::{Duration, Instant};

use berth_infrastructure::feed::checkpoints::checkpoint_of;
use berth_infrastructure::feed::{head_position, Checkpoint};
use berth_infrastructure::StoreError;
use deadpool_postgres::{GenericClient, Pool};
use serde::Serialize;
use utoipa::ToSchema;

use crate::blue_green::{copy_checkpoint, rebuild_checkpoint};
use crate::PROJECTION_NAMES;

/// One projection's progress.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProjectionStatus {
    /// The projection (`catalog`, `servers`, `audit`, `bulk`, `identity`), or
    /// `NAME@rebuild` for the copy a rebuild under way is building.
    pub name: String,
    /// Global position of the last event it applied (0 before the first).
    pub position: i64,
    /// The highest position in the event store.
    pub head: i64,
    /// Age in seconds of the oldest event it has not applied yet; 0 when caught up.
    pub lag_seconds: f64,
    /// Events applied per second over the sampling interval; only from
    /// [`sample_status`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_per_second: Option<f64>,
}

// The first unapplied event in feed order is the one the projection waits on; its age is
// the lag, including time spent behind a transaction that has not committed yet.
const LAG: &str = "SELECT greatest(extract(epoch FROM now() - recorded_at), 0)::float8 \
     FROM events WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
     ORDER BY transaction_id, global_position LIMIT 1";

const APPLIED_BETWEEN: &str = "SELECT count(*) FROM events \
     WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
       AND (transaction_id, global_position) <= ($3::text::xid8, $4)";

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

/// Every projection's checkpoint, then each rebuild copy's right after its projection.
async fn checkpoints(client: &impl GenericClient) -> Result<Vec<(String, Checkpoint)>, StoreError> {
    let mut all = Vec::with_capacity(PROJECTION_NAMES.len());
    for name in PROJECTION_NAMES {
        all.push((name.to_string(), checkpoint_of(client, name).await?));
        if let Some(copy) = copy_checkpoint(client, name).await? {
            all.push((rebuild_checkpoint(name), copy));
        }
    }
    Ok(all)
}

async fn statuses(
    client: &impl GenericClient,
    checkpoints: &[(String, Checkpoint)],
) -> Result<Vec<ProjectionStatus>, StoreError> {
    let mut statuses = Vec::with_capacity(checkpoints.len());
    for (name, checkpoint) in checkpoints {
        statuses.push(ProjectionStatus {
            name: name.clone(),
            position: checkpoint.position,
            head: 0,
            lag_seconds: lag_seconds(client, *checkpoint).await?,
            events_per_second: None,
        });
    }
    // Read last, so no projection is ever shown ahead of the head.
    let head = head_position(client).await?;
    for s in &mut statuses {
        s.head = head;
    }
    Ok(statuses)
}

/// The progress of every projection, in [`PROJECTION_NAMES`] order, with the copies of
/// rebuilds under way.
pub async fn status(pool: &Pool) -> Result<Vec<ProjectionStatus>, StoreError> {
    let client = pool.get().await?;
    let now = checkpoints(&client).await?;
    statuses(&client, &now).await
}

/// [`status`] with each projection's rate: checkpoints are read twice, `interval` apart,
/// and the events between the two are counted.
pub async fn sample_status(
    pool: &Pool,
    interval: Duration,
) -> Result<Vec<ProjectionStatus>, StoreError> {
    let client = pool.get().await?;
    let before = checkpoints(&client).await?;
    let started = Instant::now();
    tokio::time::sleep(interval).await;
    let after = checkpoints(&client).await?;
    let seconds = started.elapsed().as_secs_f64();
    let mut statuses = statuses(&client, &after).await?;
    let counted = client.prepare_cached(APPLIED_BETWEEN).await?;
    for (status, (name, to)) in statuses.iter_mut().zip(&after) {
        // A copy that started or finished during the interval has no earlier reading.
        let Some((_, from)) = before.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let applied: i64 = if to > from {
            client
                .query_one(
                    &counted,
                    &[
                        &from.transaction_id.to_string(),
                        &from.position,
                        &to.transaction_id.to_string(),
                        &to.position,
                    ],
                )
                .await?
                .try_get(0)?
        } else {
            0
        };
        status.events_per_second = Some(applied as f64 / seconds.max(f64::EPSILON));
    }
    Ok(statuses)
}
