//! Which PostgreSQL Berth uses: the server `DATABASE_URL` names, or else a private
//! cluster started from the machine's PostgreSQL binaries in `<data_dir>/pg`.

use std::path::Path;

use anyhow::Context;
use berth_infrastructure::db::Database;
use berth_infrastructure::embedded::{EmbeddedOptions, EmbeddedPostgres};
use secrecy::{ExposeSecret, SecretString};

/// The database in use, and the embedded cluster when Berth started one.
pub struct OpenDatabase {
    database: Database,
    embedded: Option<EmbeddedPostgres>,
}

impl OpenDatabase {
    /// Connects to `url` when given, else starts (creating on first use) the embedded
    /// cluster under `data_dir`.
    pub async fn open(url: Option<&SecretString>, data_dir: &Path) -> anyhow::Result<Self> {
        match url {
            Some(url) => {
                let database = Database::from_url(url.expose_secret())
                    .context("DATABASE_URL is not a valid PostgreSQL connection string")?;
                tracing::info!("using the PostgreSQL server named by DATABASE_URL");
                Ok(Self {
                    database,
                    embedded: None,
                })
            }
            None => {
                let embedded = EmbeddedPostgres::start(EmbeddedOptions::new(data_dir))
                    .await
                    .context("starting the embedded PostgreSQL cluster")?;
                tracing::info!(
                    cluster = %embedded.cluster_dir().display(),
                    "embedded PostgreSQL cluster started"
                );
                Ok(Self {
                    database: embedded.database(),
                    embedded: Some(embedded),
                })
            }
        }
    }

    /// The connection settings.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Stops the embedded cluster, if Berth started one; an external server is left alone.
    pub async fn close(self) {
        if let Some(embedded) = self.embedded {
            match embedded.stop().await {
                Ok(()) => tracing::info!("embedded PostgreSQL cluster stopped"),
                Err(e) => {
                    tracing::error!(error = %e, "stopping the embedded PostgreSQL cluster failed")
                }
            }
        }
    }
}
