//! Reading the bulk operations projection.

use berth_infrastructure::StoreError;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

// One statement, so the counts and the outcomes come from the same snapshot even while
// the projector applies a batch.
const SELECT_OPERATION: &str = "SELECT id, operation, state, requested_by, total, succeeded, \
     failed, created_at, updated_at, completed_at, position, \
     ARRAY(SELECT server_id FROM bulk_targets t WHERE t.bulk_id = b.id ORDER BY ordinal), \
     ARRAY(SELECT outcome FROM bulk_targets t WHERE t.bulk_id = b.id ORDER BY ordinal), \
     ARRAY(SELECT error FROM bulk_targets t WHERE t.bulk_id = b.id ORDER BY ordinal) \
     FROM bulk_operations b WHERE id = $1";

/// How the action went for one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BulkTargetView {
    /// The server.
    pub server_id: Uuid,
    /// `pending` (not acted on yet), `succeeded` or `failed`.
    pub outcome: String,
    /// Why it failed, for `failed` targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A bulk operation with its progress and every target's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BulkOperationView {
    /// Its id.
    pub id: Uuid,
    /// `start`, `stop`, `restart`, `enable`, `disable` or `delete`.
    pub operation: String,
    /// `running` until every target has an outcome; then `completed` (all succeeded),
    /// `partially_failed` (some failed) or `failed` (all failed).
    pub state: String,
    /// Who asked (e.g. `user:admin`).
    pub requested_by: String,
    /// Targets (distinct servers).
    pub total: u32,
    /// Targets that succeeded so far.
    pub succeeded: u32,
    /// Targets that failed so far.
    pub failed: u32,
    /// Targets not acted on yet.
    pub pending: u32,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When it last progressed.
    pub updated_at: DateTime<Utc>,
    /// When its last target got its outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// The global position of the last event applied to it.
    pub position: i64,
    /// Every target in the order asked.
    pub results: Vec<BulkTargetView>,
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or_default()
}

/// The bulk operation `id`, or `None` when the read model has no such operation.
pub async fn get_bulk_operation<C: GenericClient>(
    client: &C,
    id: Uuid,
) -> Result<Option<BulkOperationView>, StoreError> {
    let statement = client.prepare_cached(SELECT_OPERATION).await?;
    let Some(row) = client.query_opt(&statement, &[&id]).await? else {
        return Ok(None);
    };
    let server_ids: Vec<Uuid> = row.try_get(11)?;
    let outcomes: Vec<String> = row.try_get(12)?;
    let errors: Vec<Option<String>> = row.try_get(13)?;
    let results = server_ids
        .into_iter()
        .zip(outcomes)
        .zip(errors)
        .map(|((server_id, outcome), error)| BulkTargetView {
            server_id,
            outcome,
            error,
        })
        .collect();
    let (total, succeeded, failed) = (
        count(row.try_get(4)?),
        count(row.try_get(5)?),
        count(row.try_get(6)?),
    );
    Ok(Some(BulkOperationView {
        id: row.try_get(0)?,
        operation: row.try_get(1)?,
        state: row.try_get(2)?,
        requested_by: row.try_get(3)?,
        total,
        succeeded,
        failed,
        pending: total.saturating_sub(succeeded + failed),
        created_at: row.try_get(7)?,
        updated_at: row.try_get(8)?,
        completed_at: row.try_get(9)?,
        position: row.try_get(10)?,
        results,
    }))
}
