//! Who was made an administrator, as the event store says (a role is given when a user
//! is created and never changes), so a check against locking everyone out never waits
//! for a projection.

use deadpool_postgres::GenericClient;

use crate::StoreError;

/// `UserCreated` is a user stream's first event: read through the index of first events.
const ADMINISTRATORS: &str = "SELECT aggregate_id FROM events \
     WHERE aggregate_type = 'user' AND sequence = 1 AND event_type = 'UserCreated' \
     AND payload->>'role' = 'admin'";

/// The ids of every user created as an administrator, disabled or not.
pub async fn administrator_ids<C: GenericClient>(
    client: &C,
) -> Result<Vec<berth_domain::UserId>, StoreError> {
    let statement = client.prepare_cached(ADMINISTRATORS).await?;
    let rows = client.query(&statement, &[]).await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get(0)?;
            id.parse()
                .map_err(|_| StoreError::Malformed(format!("user id `{id}`")))
        })
        .collect()
}
