//! The Berth processes on one database, by node name (`nodes`): each says it is alive
//! every few seconds, and the one holding the worker lease says so. Other nodes read it
//! to reach the node that runs a server, and people read it to see who does what.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use crate::StoreError;

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// A node not heard from for this long is gone (it may come back under its name).
pub const GONE_AFTER: Duration = Duration::from_secs(10);

/// One node as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Its name (`berth serve --node`).
    pub name: String,
    /// `all`, `api` or `worker`.
    pub role: String,
    /// Where other nodes reach it (`http://host:port`).
    pub url: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it last said it was alive.
    pub seen_at: DateTime<Utc>,
    /// Since when it holds the worker lease (drives the runtime), if it does.
    pub active_since: Option<DateTime<Utc>>,
    /// How long it has been silent, by the database's clock (the nodes' clocks may
    /// disagree).
    pub silent_for: Duration,
}

impl NodeRecord {
    /// Whether it was heard from within [`GONE_AFTER`].
    pub fn alive(&self) -> bool {
        self.silent_for < GONE_AFTER
    }
}

/// The columns [`record`] reads.
const COLUMNS: &str = "name, role, url, started_at, seen_at, active_since, \
     greatest(extract(epoch FROM now() - seen_at), 0)::float8 AS silent_secs";

/// Records that node `name` started with `role`, reachable at `url` (replacing what an
/// earlier run under the same name left).
pub async fn register(pool: &Pool, name: &str, role: &str, url: &str) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO nodes (name, role, url, started_at, seen_at, active_since) \
             VALUES ($1, $2, $3, now(), now(), NULL) \
             ON CONFLICT (name) DO UPDATE SET role = excluded.role, url = excluded.url, \
             started_at = excluded.started_at, seen_at = excluded.seen_at, active_since = NULL",
            &[&name, &role, &url],
        )
        .await?;
    Ok(())
}

/// Records that node `name` is alive now, on `client` (a connection of its own: a
/// node whose pool is busy is still alive).
pub async fn heartbeat(client: &tokio_postgres::Client, name: &str) -> Result<(), StoreError> {
    client
        .execute("UPDATE nodes SET seen_at = now() WHERE name = $1", &[&name])
        .await?;
    Ok(())
}

/// Records whether node `name` holds the worker lease.
pub async fn set_active(pool: &Pool, name: &str, active: bool) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE nodes SET active_since = CASE WHEN $2 THEN now() END, seen_at = now() \
             WHERE name = $1",
            &[&name, &active],
        )
        .await?;
    Ok(())
}

/// Forgets node `name` (it stopped cleanly).
pub async fn remove(pool: &Pool, name: &str) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute("DELETE FROM nodes WHERE name = $1", &[&name])
        .await?;
    Ok(())
}

/// Every node recorded, by name.
pub async fn list(pool: &Pool) -> Result<Vec<NodeRecord>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(&format!("SELECT {COLUMNS} FROM nodes ORDER BY name"), &[])
        .await?;
    rows.iter().map(record).collect()
}

/// The active worker: of the nodes heard from within [`GONE_AFTER`] that say they hold
/// the worker lease, the one that took it last (one that died holding it still says so
/// until it is gone); never node `except`, which asks knowing it does not hold it.
pub async fn active(pool: &Pool, except: Option<&str>) -> Result<Option<NodeRecord>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM nodes WHERE active_since IS NOT NULL \
                 AND seen_at > now() - $1::float8 * interval '1 second' \
                 AND name IS DISTINCT FROM $2 \
                 ORDER BY active_since DESC LIMIT 1"
            ),
            &[&GONE_AFTER.as_secs_f64(), &except],
        )
        .await?;
    row.as_ref().map(record).transpose()
}

/// Forgets the nodes not heard from for [`FORGOTTEN_AFTER`] (they died, and a node
/// started again under the same name records itself anew).
pub async fn forget_gone(pool: &Pool) -> Result<u64, StoreError> {
    let client = pool.get().await?;
    Ok(client
        .execute(
            "DELETE FROM nodes WHERE seen_at < now() - $1::float8 * interval '1 second'",
            &[&FORGOTTEN_AFTER.as_secs_f64()],
        )
        .await?)
}

/// How long a node that died stays listed.
pub const FORGOTTEN_AFTER: Duration = Duration::from_secs(24 * 3600);

fn record(row: &tokio_postgres::Row) -> Result<NodeRecord, StoreError> {
    Ok(NodeRecord {
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        url: row.try_get("url")?,
        started_at: row.try_get("started_at")?,
        seen_at: row.try_get("seen_at")?,
        active_since: row.try_get("active_since")?,
        silent_for: Duration::try_from_secs_f64(row.try_get("silent_secs")?)
            .unwrap_or(Duration::MAX),
    })
}
