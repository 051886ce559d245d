//! Which PostgreSQL Berth uses: the server `DATABASE_URL` names, or else a private
//! cluster started from the machine's PostgreSQL binaries in `<data_dir>/pg`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use berth_infrastructure::db::Database;
use berth_infrastructure::embedded::{
    join_running, EmbeddedError, EmbeddedOptions, EmbeddedPostgres,
};
use secrecy::{ExposeSecret, SecretString};

/// What to do when another Berth process already holds the embedded cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldCluster {
    /// Refuse: `berth serve` owns the cluster it runs on, and stops it when it stops.
    Refuse,
    /// Use it as a guest, never stopping it: every other command, so that it runs
    /// beside a live `berth serve`.
    Join,
}

/// How long a guest waits for a holder that is still starting the cluster.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The database in use, and the embedded cluster when Berth started one.
pub struct OpenDatabase {
    database: Database,
    embedded: Option<EmbeddedPostgres>,
}

impl OpenDatabase {
    /// Connects to `url` when given, else starts (creating on first use) the embedded
    /// cluster under `data_dir`, or joins it when another Berth process holds it and
    /// `held` says so.
    pub async fn open(
        url: Option<&SecretString>,
        data_dir: &Path,
        held: HeldCluster,
    ) -> anyhow::Result<Self> {
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
                let started = EmbeddedPostgres::start(EmbeddedOptions::new(data_dir)).await;
                let embedded = match started {
                    Err(EmbeddedError::InUse { .. }) if held == HeldCluster::Join => {
                        let options = EmbeddedOptions::new(data_dir);
                        let database =
                            join_running(&options.data_dir, &options.database, JOIN_TIMEOUT)
                                .await
                                .context(
                                    "using the embedded PostgreSQL cluster of the running Berth",
                                )?;
                        tracing::info!(
                            "using the embedded PostgreSQL cluster of the running Berth"
                        );
                        return Ok(Self {
                            database,
                            embedded: None,
                        });
                    }
                    other => other.context("starting the embedded PostgreSQL cluster")?,
                };
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
