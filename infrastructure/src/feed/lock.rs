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
/// The holder, for its part, learns at once when its connection ends (the server closed
/// it: a restart, `pg_terminate_backend`), and checks it every second against a silent
/// network, so it stops its work before another process can have taken the lock for long.
pub struct Lease {
    client: tokio_postgres::Client,
    /// Turns true when the connection has ended.
    ended: tokio::sync::watch::Receiver<bool>,
    /// The server process of the connection, which holds the lock.
    backend: i32,
}

impl Lease {
    /// Takes lock `key`, waiting while another process holds it.
    pub async fn acquire(db: &Database, key: &str) -> Result<Self, StoreError> {
        let (client, ended, backend) = Self::connect(db).await?;
        client
            .execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &[&key])
            .await?;
        Ok(Self {
            client,
            ended,
            backend,
        })
    }

    /// The server process holding the lock for this lease.
    pub fn backend(&self) -> i32 {
        self.backend
    }

    /// Takes lock `key` if nobody holds it; `None` when another process does. When
    /// `former` is the server process of this process's own lease that was given up as
    /// lost (it stopped answering, yet may still hold the lock), that session is ended
    /// first, if it still holds lock `key`, so that it is not taken for another holder.
    pub async fn try_acquire(
        db: &Database,
        key: &str,
        former: Option<i32>,
    ) -> Result<Option<Self>, StoreError> {
        let (client, ended, backend) = Self::connect(db).await?;
        if let Some(former) = former {
            client
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks \
                     WHERE pid = $1 AND locktype = 'advisory' AND granted \
                     AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                     AND ((classid::bigint << 32) | objid::bigint) = hashtextextended($2, 0)",
                    &[&former, &key],
                )
                .await?;
            // Its lock goes with it, but not in the same instant.
            for _ in 0..50 {
                let gone: bool = client
                    .query_one(
                        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)",
                        &[&former],
                    )
                    .await?
                    .get(0);
                if gone {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let taken: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&key],
            )
            .await?
            .get(0);
        Ok(taken.then_some(Self {
            client,
            ended,
            backend,
        }))
    }

    /// A connection of its own whose death either side notices within seconds, and what
    /// turns true when it has ended.
    async fn connect(
        db: &Database,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio::sync::watch::Receiver<bool>,
            i32,
        ),
        StoreError,
    > {
        let mut config = db.config().clone();
        // This side: a standby waiting on the lock learns of a vanished server.
        config
            .keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(5))
            .keepalives_interval(std::time::Duration::from_secs(2))
            .keepalives_retries(3);
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        let (end, ended) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "the lease's connection ended");
            }
            let _ = end.send(true);
        });
        // The server's side: it frees the lock of a holder whose machine vanished
        // (ignored over a Unix socket, where a dead peer is seen at once anyway).
        client
            .batch_execute(
                "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; \
                 SET tcp_keepalives_count = 3; SET tcp_user_timeout = 10000",
            )
            .await?;
        let backend: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        Ok((client, ended, backend))
    }

    /// Completes when the lease is lost: its connection closed or stopped answering.
    pub async fn lost(&self) {
        let mut ended = self.ended.clone();
        tokio::select! {
            _ = ended.wait_for(|ended| *ended) => {}
            () = self.unanswered() => {}
        }
    }

    /// Completes when a check of the connection fails.
    async fn unanswered(&self) {
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
