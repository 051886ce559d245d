//! Which process drives a consumer of the feed: a session-level PostgreSQL advisory lock,
//! held on a connection of its own for as long as the consumer runs, and released by
//! the server when that process dies, however it dies.

use crate::db::Database;
use crate::StoreError;

/// The lock key of the durable subscription `name` (the process manager, the bulk
/// driver, each projection).
pub fn subscription_key(name: &str) -> String {
    format!("berth.subscription.{name}")
}

/// Takes the session-level advisory lock `key` on a dedicated connection, waiting while
/// another process holds it. The lock lasts as long as the returned client.
pub async fn advisory_lock(db: &Database, key: &str) -> Result<tokio_postgres::Client, StoreError> {
    let client = db.connect().await?;
    client
        .execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &[&key])
        .await?;
    Ok(client)
}
