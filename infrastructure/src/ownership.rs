//! Who owns which stream, as the store records it (`stream_owners`, written in the
//! transaction of each stream's first event): the authority for access checks, with no
//! projection lag.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;

/// The owner of stream `aggregate_type`/`aggregate_id` (`user:NAME`), or `None` when it
/// does not exist or belongs to no user.
pub async fn stream_owner<C: GenericClient>(
    client: &C,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<String>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT owner FROM stream_owners WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .await?;
    Ok(client
        .query_opt(&statement, &[&aggregate_type, &aggregate_id])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?)
}

/// Which of `ids` (streams of `aggregate_type`) `owner` owns.
pub async fn owned_among<C: GenericClient>(
    client: &C,
    aggregate_type: &str,
    ids: &[Uuid],
    owner: &str,
) -> Result<Vec<Uuid>, StoreError> {
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let statement = client
        .prepare_cached(
            "SELECT aggregate_id FROM stream_owners \
             WHERE aggregate_type = $1 AND aggregate_id = ANY($2) AND owner = $3",
        )
        .await?;
    stream_ids(
        &client
            .query(&statement, &[&aggregate_type, &ids, &owner])
            .await?,
    )
}

/// The ids of `owner`'s streams of `aggregate_type`.
pub async fn streams_of_owner<C: GenericClient>(
    client: &C,
    owner: &str,
    aggregate_type: &str,
) -> Result<Vec<Uuid>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT aggregate_id FROM stream_owners WHERE owner = $1 AND aggregate_type = $2",
        )
        .await?;
    stream_ids(&client.query(&statement, &[&owner, &aggregate_type]).await?)
}

/// The stream ids (first column) of `rows`.
fn stream_ids(rows: &[tokio_postgres::Row]) -> Result<Vec<Uuid>, StoreError> {
    rows.iter()
        .map(|row| {
            let id: String = row.try_get(0)?;
            Uuid::parse_str(&id).map_err(|_| StoreError::Malformed(format!("stream id {id}")))
        })
        .collect()
}

/// The stream owners as the access rules ask for them, read from `stream_owners`.
pub struct PgStreamOwners {
    pool: deadpool_postgres::Pool,
}

impl PgStreamOwners {
    /// Owners read through `pool`.
    pub fn new(pool: deadpool_postgres::Pool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl berth_application::access::StreamOwners for PgStreamOwners {
    async fn owner(
        &self,
        aggregate_type: &str,
        id: uuid::Uuid,
    ) -> Result<Option<String>, berth_application::AppError> {
        let unavailable =
            |e: &dyn std::fmt::Display| berth_application::AppError::Unavailable(e.to_string());
        let client = self.pool.get().await.map_err(|e| unavailable(&e))?;
        stream_owner(&client, aggregate_type, &id.to_string())
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn streams_of(
        &self,
        owner: &str,
        aggregate_type: &str,
    ) -> Result<Vec<uuid::Uuid>, berth_application::AppError> {
        let unavailable =
            |e: &dyn std::fmt::Display| berth_application::AppError::Unavailable(e.to_string());
        let client = self.pool.get().await.map_err(|e| unavailable(&e))?;
        streams_of_owner(&client, owner, aggregate_type)
            .await
            .map_err(|e| unavailable(&e))
    }
}
