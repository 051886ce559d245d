//! The PostgreSQL server every figure of a run is measured on: `DATABASE_URL`'s, or a
//! throwaway cluster started with Berth's own embedded-cluster code and settings
//! (durable: `fsync` on, as `berth serve` runs it). Each scenario gets a fresh,
//! migrated database of its own, dropped when the scenario ends.

use std::path::PathBuf;

use anyhow::Context;
use berth_infrastructure::db::Database;
use berth_infrastructure::embedded::{EmbeddedOptions, EmbeddedPostgres};
use berth_infrastructure::migrations;
use tokio_postgres::config::Host;

/// Connections the throwaway cluster admits: 64 clients of Berth, the peer's pool, a
/// `berth serve` and its load generator at once.
const MAX_CONNECTIONS: u32 = 400;

/// The server of a run.
pub struct BenchServer {
    admin: tokio_postgres::Config,
    cluster: Option<EmbeddedPostgres>,
    dir: Option<PathBuf>,
}

impl BenchServer {
    /// Uses `url`'s server, or starts a throwaway durable cluster under `/tmp`.
    pub async fn start(url: Option<&str>) -> anyhow::Result<Self> {
        if let Some(url) = url {
            let db = Database::from_url(url).context("DATABASE_URL is not usable")?;
            return Ok(Self {
                admin: db.config().clone(),
                cluster: None,
                dir: None,
            });
        }
        let dir = PathBuf::from(format!("/tmp/berth-bench-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).ok();
        }
        std::fs::create_dir_all(&dir).context("creating the bench cluster directory")?;
        // The cluster runs as `postgres` when we are root: it must enter this directory.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .context("opening the bench cluster directory to its user")?;
        let options = EmbeddedOptions {
            database: "postgres".to_owned(),
            max_connections: Some(MAX_CONNECTIONS),
            own_process_group: false,
            ..EmbeddedOptions::new(&dir)
        };
        let cluster = match EmbeddedPostgres::start(options).await {
            Ok(cluster) => cluster,
            Err(e) => {
                std::fs::remove_dir_all(&dir).ok();
                return Err(e).context("starting a throwaway PostgreSQL cluster");
            }
        };
        Ok(Self {
            admin: cluster.database().config().clone(),
            cluster: Some(cluster),
            dir: Some(dir),
        })
    }

    /// What the server is, for the report: version and durability settings.
    pub async fn describe(&self) -> anyhow::Result<String> {
        let client = Database::from_config(self.admin.clone()).connect().await?;
        let mut parts = Vec::new();
        for setting in [
            "server_version",
            "fsync",
            "synchronous_commit",
            "shared_buffers",
        ] {
            let row = client
                .query_one(&format!("SHOW {setting}"), &[])
                .await
                .with_context(|| format!("SHOW {setting}"))?;
            parts.push(format!("{setting}={}", row.get::<_, String>(0)));
        }
        let kind = if self.cluster.is_some() {
            "throwaway embedded cluster"
        } else {
            "DATABASE_URL"
        };
        Ok(format!("{kind}: {}", parts.join(" ")))
    }

    /// A fresh database named `berth_bench_<name>` (replacing one left by a killed run),
    /// migrated when `migrate`.
    pub async fn database(&self, name: &str, migrate: bool) -> anyhow::Result<BenchDatabase> {
        let name = format!("berth_bench_{name}");
        let client = Database::from_config(self.admin.clone()).connect().await?;
        // Two statements: DROP DATABASE refuses to run inside a multi-statement batch.
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .with_context(|| format!("dropping a leftover database {name}"))?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating database {name}"))?;
        let mut config = self.admin.clone();
        config.dbname(&name);
        let database = Database::from_config(config);
        if migrate {
            migrations::run(&database)
                .await
                .with_context(|| format!("migrating {name}"))?;
        }
        Ok(BenchDatabase {
            name,
            admin: self.admin.clone(),
            database,
        })
    }

    /// Stops the throwaway cluster, if this run started one, and removes its files.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(cluster) = self.cluster.take() {
            cluster.stop().await.context("stopping the bench cluster")?;
        }
        if let Some(dir) = self.dir.take() {
            std::fs::remove_dir_all(&dir).ok();
        }
        Ok(())
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        // Dropping the cluster stops it (`pg_ctl stop -m fast`); then its files go.
        drop(self.cluster.take());
        if let Some(dir) = self.dir.take() {
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}

/// One scenario's database; [`BenchDatabase::remove`] drops it.
pub struct BenchDatabase {
    name: String,
    admin: tokio_postgres::Config,
    database: Database,
}

impl BenchDatabase {
    /// Its connection settings.
    pub fn database(&self) -> Database {
        self.database.clone()
    }

    /// A libpq `key=value` string for it, for a child `berth` process's `DATABASE_URL`.
    pub fn url(&self) -> String {
        berth_tests::conninfo(self.database.config())
    }

    /// A `postgres://` URL for it, for clients that take only URLs (sqlx).
    pub fn uri(&self) -> String {
        let config = self.database.config();
        let user = config.get_user().unwrap_or("postgres");
        let db = config.get_dbname().unwrap_or("postgres");
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let mut uri = format!("postgres://{user}");
        if let Some(password) = config.get_password() {
            uri += &format!(":{}", String::from_utf8_lossy(password));
        }
        match config.get_hosts().first() {
            Some(Host::Tcp(host)) => uri += &format!("@{host}:{port}/{db}"),
            Some(Host::Unix(path)) => {
                uri += &format!("@localhost:{port}/{db}?host={}", path.display());
            }
            None => uri += &format!("@localhost:{port}/{db}"),
        }
        uri
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops it, with whatever is still connected.
    pub async fn remove(self) -> anyhow::Result<()> {
        let client = Database::from_config(self.admin.clone()).connect().await?;
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .with_context(|| format!("dropping database {}", self.name))
    }
}
