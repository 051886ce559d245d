//! Which PostgreSQL Berth uses: the server `DATABASE_URL` names, or else a private
//! cluster started from the machine's PostgreSQL binaries in `<data_dir>/pg`, shared by
//! every Berth command while `berth serve` runs on it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use berth_infrastructure::db::Database;
use berth_infrastructure::embedded::{try_join, EmbeddedError, EmbeddedOptions, EmbeddedPostgres};
use secrecy::{ExposeSecret, SecretString};

/// How a process uses the embedded cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterUse {
    /// `berth serve`: starts the cluster, shares it with every other command while it
    /// runs, stops it when it stops; refuses a cluster another process holds.
    Serve,
    /// A one-shot command: uses the cluster a running `berth serve` shares (never
    /// stopping it), else starts its own; waits while another one-shot command holds it.
    Command,
    /// What must not run beside another Berth process (`keys rotate-master`): starts its
    /// own cluster, refuses one another process holds.
    Exclusive,
}

/// How long a command waits for another one-shot command holding the cluster.
const WAIT_FOR_HOLDER: Duration = Duration::from_secs(60);

/// The pause between looks at a held cluster.
const LOOK_AGAIN: Duration = Duration::from_millis(200);

/// The database in use, and the embedded cluster when Berth started one.
pub struct OpenDatabase {
    database: Database,
    embedded: Option<EmbeddedPostgres>,
}

impl OpenDatabase {
    /// Connects to `url` when given, else uses the embedded cluster under `data_dir` as
    /// `usage` says.
    pub async fn open(
        url: Option<&SecretString>,
        data_dir: &Path,
        usage: ClusterUse,
    ) -> anyhow::Result<Self> {
        let Some(url) = url else {
            return Self::embedded(data_dir, usage).await;
        };
        let database = Database::from_url(url.expose_secret())
            .context("DATABASE_URL is not a valid PostgreSQL connection string")?;
        tracing::info!("using the PostgreSQL server named by DATABASE_URL");
        Ok(Self {
            database,
            embedded: None,
        })
    }

    async fn embedded(data_dir: &Path, usage: ClusterUse) -> anyhow::Result<Self> {
        let mut options = EmbeddedOptions::new(data_dir);
        options.announce = usage == ClusterUse::Serve;
        let deadline = tokio::time::Instant::now() + WAIT_FOR_HOLDER;
        loop {
            let (dir, lock) = match EmbeddedPostgres::start(options.clone()).await {
                Ok(embedded) => {
                    tracing::info!(
                        cluster = %embedded.cluster_dir().display(),
                        "embedded PostgreSQL cluster started"
                    );
                    return Ok(Self {
                        database: embedded.database(),
                        embedded: Some(embedded),
                    });
                }
                Err(EmbeddedError::InUse { dir, lock }) if usage == ClusterUse::Command => {
                    (dir, lock)
                }
                Err(e) => return Err(e).context("starting the embedded PostgreSQL cluster"),
            };
            if let Some(database) = try_join(&options.data_dir, &options.database).await? {
                tracing::info!("using the embedded PostgreSQL cluster of the running Berth");
                return Ok(Self {
                    database,
                    embedded: None,
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EmbeddedError::StillHeld {
                    dir,
                    lock,
                    waited_secs: WAIT_FOR_HOLDER.as_secs(),
                })
                .context("using the embedded PostgreSQL cluster");
            }
            tokio::time::sleep(LOOK_AGAIN).await;
        }
    }

    /// The connection settings.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Stops the embedded cluster, if Berth started one; an external server, or the
    /// cluster of the running Berth, is left alone.
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
