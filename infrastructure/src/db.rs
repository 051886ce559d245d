//! Connection settings and the shared connection pool.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::StoreError;

/// Where the database is: a parsed `tokio_postgres::Config`, cloned for the pool and
/// for dedicated connections (LISTEN, advisory locks).
#[derive(Clone, Debug)]
pub struct Database {
    config: tokio_postgres::Config,
}

impl Database {
    /// Parses a `postgres://` URL or a `key=value` connection string.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| {
                StoreError::Malformed(format!("database url: {e}"))
            })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("berth");
        }
        Ok(Self { config })
    }

    /// Wraps an already built config.
    pub fn from_config(config: tokio_postgres::Config) -> Self {
        Self { config }
    }

    /// The connection settings.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// A pool of at most `max_size` connections.
    pub fn pool(&self, max_size: usize) -> Result<Pool, StoreError> {
        let manager = Manager::from_config(
            self.config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(max_size)
            .wait_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Malformed(format!("pool: {e}")))
    }

    /// A dedicated connection outside the pool; its driver task runs until the
    /// returned client is dropped.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, StoreError> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "dedicated database connection ended");
            }
        });
        Ok(client)
    }
}

/// This installation's id, created on first call.
pub async fn installation_id(pool: &Pool) -> Result<uuid::Uuid, StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO installation (id) VALUES ($1) ON CONFLICT (singleton) DO NOTHING",
            &[&uuid::Uuid::new_v4()],
        )
        .await?;
    let row = client.query_one("SELECT id FROM installation", &[]).await?;
    Ok(row.try_get(0)?)
}
