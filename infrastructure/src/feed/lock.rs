//! Which process drives a consumer of the feed: a session-level PostgreSQL advisory lock,
//! held on a connection of its own for as long as the consumer runs, and released by
//! the server when that process dies, however it dies.

use std::time::Duration;

use crate::db::Database;
use crate::StoreError;

/// How often the holder of a [`Lease`] checks that its connection still holds it.
const LEASE_CHECK: Duration = Duration::from_secs(1);

/// How long one check may take before the lease counts as lost.
const LEASE_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

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

/// An advisory lock whose holder learns when it is lost, for work that must never run in
/// two places at once (driving the runtime).
///
/// The server frees the lock as soon as the holder's connection ends: at once when the
/// holder dies (its kernel closes the socket), and within about ten seconds when its
/// machine or network goes away (the TCP keepalive and user timeout set on the session).
/// The holder, for its part, checks its connection every second and stops its work when
/// a check fails, before another process can have taken the lock for long.
pub struct Lease {
    client: tokio_postgres::Client,
}

impl Lease {
    /// Takes lock `key`, waiting while another process holds it.
    pub async fn acquire(db: &Database, key: &str) -> Result<Self, StoreError> {
        let client = db.connect().await?;
        // Applies to the server's side of this connection only (ignored over a Unix
        // socket, where a dead peer is seen at once anyway).
        client
            .batch_execute(
                "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; \
                 SET tcp_keepalives_count = 3; SET tcp_user_timeout = 10000",
            )
            .await?;
        client
            .execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &[&key])
            .await?;
        Ok(Self { client })
    }

    /// Completes when the lease is lost: its connection closed or stopped answering.
    pub async fn lost(&self) {
        let mut checks = tokio::time::interval(LEASE_CHECK);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            checks.tick().await;
            if self.client.is_closed() {
                return;
            }
            match tokio::time::timeout(LEASE_CHECK_TIMEOUT, self.client.simple_query("")).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the lease's connection failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!("the lease's connection stopped answering");
                    return;
                }
            }
        }
    }
}
