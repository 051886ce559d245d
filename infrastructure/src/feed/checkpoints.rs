//! Where each durable subscription stands in the feed (`subscription_checkpoints`).

use deadpool_postgres::GenericClient;

use super::Checkpoint;
use crate::StoreError;

/// Loads subscription `$1`'s checkpoint, creating it at the start, and locks its row
/// until the transaction ends (a projector's batch and a rebuild's swap hold it).
pub const LOAD_CHECKPOINT: &str = "INSERT INTO subscription_checkpoints (name) VALUES ($1) \
     ON CONFLICT (name) DO UPDATE SET name = excluded.name \
     RETURNING transaction_id::text, global_position";

/// Sets subscription `$1`'s checkpoint to transaction `$2` (text), position `$3`,
/// creating it when missing.
pub const SAVE_CHECKPOINT: &str =
    "INSERT INTO subscription_checkpoints (name, transaction_id, global_position) \
     VALUES ($1, $2::text::xid8, $3) ON CONFLICT (name) DO UPDATE \
     SET transaction_id = excluded.transaction_id, \
         global_position = excluded.global_position, updated_at = now()";

/// The stored checkpoint of subscription `name` (start if it never ran).
pub async fn checkpoint_of<C: GenericClient>(
    client: &C,
    name: &str,
) -> Result<Checkpoint, StoreError> {
    let row = client
        .query_opt(
            "SELECT transaction_id::text, global_position FROM subscription_checkpoints \
             WHERE name = $1",
            &[&name],
        )
        .await?;
    row.as_ref()
        .map_or(Ok(Checkpoint::START), Checkpoint::from_row)
}

/// Saves subscription `name`'s checkpoint as `at`.
pub async fn save_checkpoint<C: GenericClient>(
    client: &C,
    name: &str,
    at: Checkpoint,
) -> Result<(), StoreError> {
    let statement = client.prepare_cached(SAVE_CHECKPOINT).await?;
    client
        .execute(
            &statement,
            &[&name, &at.transaction_id.to_string(), &at.position],
        )
        .await?;
    Ok(())
}
