//! The shared test kit: one PostgreSQL server per test run, and a fresh database per
//! test cloned from a migrated template, dropped when the test ends (pass or fail).
//!
//! With `DATABASE_URL` set (as `tests/run.sh` does) every test process shares that
//! server; otherwise each test process starts one private embedded cluster under
//! `/tmp`, stopped and removed when the process exits.

pub mod docker;
pub mod function_calls;
pub mod http_fixture;
pub mod mcp_client;
pub mod pets_api;
pub mod python_tools;
pub mod tls_proxy;

use std::path::PathBuf;
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

use berth_infrastructure::db::Database;
use berth_infrastructure::embedded::{EmbeddedOptions, EmbeddedPostgres};
use berth_infrastructure::migrations;
use tokio::sync::OnceCell;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;

/// Serialises template creation across test processes sharing one server. Advisory
/// locks are per database, so every process takes it in the admin database.
const TEMPLATE_LOCK: i64 = 0x6265_7274_685f_746d;

/// The admin connection settings of this process's server.
static SERVER: OnceCell<tokio_postgres::Config> = OnceCell::const_new();
/// The migrated template's name, once this process has made sure it exists.
static TEMPLATE: OnceCell<String> = OnceCell::const_new();
/// The private cluster, when this process started one; stopped at exit.
static CLUSTER: Mutex<Option<EmbeddedPostgres>> = Mutex::new(None);
static CLUSTER_DIR: OnceLock<PathBuf> = OnceLock::new();

/// A database of its own for one test, created from the migrated template and dropped
/// (`WITH (FORCE)`) when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    admin: tokio_postgres::Config,
    database: Database,
}

impl TestDatabase {
    /// Connection settings for this database.
    pub fn database(&self) -> Database {
        self.database.clone()
    }

    /// A `key=value` connection string for it, usable as `DATABASE_URL` of a child
    /// `berth` process.
    pub fn url(&self) -> String {
        conninfo(self.database.config())
    }

    /// Its name (`test_<uuid>`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // A thread with its own runtime: Drop may run inside a test's runtime, which
        // cannot be blocked on, or while it unwinds from a failed assertion.
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let client = Database::from_config(admin)
                    .connect()
                    .await
                    .map_err(|e| e.to_string())?;
                let drop = format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_identifier(&name)
                );
                client.batch_execute(&drop).await.map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

/// A fresh, migrated database for one test.
///
/// # Panics
/// When no server can be had: `DATABASE_URL` unusable, or no PostgreSQL installed.
pub async fn test_database() -> TestDatabase {
    init_tracing();
    let admin = SERVER.get_or_init(server).await;
    let template = TEMPLATE
        .get_or_init(|| async {
            ensure_template(admin)
                .await
                .unwrap_or_else(|e| panic!("preparing the migrated template database: {e}"))
        })
        .await;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let client = Database::from_config(admin.clone())
        .connect()
        .await
        .expect("connecting to the test server");
    let create = format!(
        "CREATE DATABASE {} TEMPLATE {}",
        quote_identifier(&name),
        quote_identifier(template)
    );
    // Cloning fails while anything is connected to the template, such as the
    // migrator's connection in the moment it takes to close.
    let mut attempt = 0;
    loop {
        match client.batch_execute(&create).await {
            Ok(()) => break,
            Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) && attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("creating test database {name} from {template}: {e}"),
        }
    }
    let mut config = admin.clone();
    config.dbname(&name);
    TestDatabase {
        name,
        admin: admin.clone(),
        database: Database::from_config(config),
    }
}

/// Turns tracing output on for tests when `TEST_LOG` is set (and not `0`), filtered by
/// `RUST_LOG` (default `info`). Safe to call many times.
pub fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let wanted = std::env::var("TEST_LOG").is_ok_and(|v| !v.is_empty() && v != "0");
        if wanted {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
    });
}

/// `DATABASE_URL`'s server, or a private cluster started for this process.
async fn server() -> tokio_postgres::Config {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let db = Database::from_url(&url)
            .unwrap_or_else(|e| panic!("DATABASE_URL is not a usable connection string: {e}"));
        return db.config().clone();
    }
    // Named by pid: one left by a dead process (or by a failed start of this one)
    // holds nothing running and is replaced.
    let dir = PathBuf::from(format!("/tmp/berth-test-{}", std::process::id()));
    if dir.exists() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::fs::create_dir_all(&dir).expect("creating the test cluster directory under /tmp");
    // The cluster may run as `postgres` (when we are root): it must enter this dir.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("opening the test cluster directory to its user");
    let _ = CLUSTER_DIR.set(dir.clone());
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registering a plain `extern "C" fn` that captures nothing.
        if unsafe { libc::atexit(stop_cluster_at_exit) } != 0 {
            eprintln!(
                "warning: the test cluster in {} will not be stopped at exit",
                dir.display()
            );
        }
    });
    let options = EmbeddedOptions {
        fsync: false,
        own_process_group: false,
        database: "postgres".to_owned(),
        max_connections: Some(200),
        ..EmbeddedOptions::new(&dir)
    };
    let started = EmbeddedPostgres::start(options).await;
    let pg = started.unwrap_or_else(|e| panic!("starting a PostgreSQL cluster for the tests: {e}"));
    let config = pg.database().config().clone();
    *CLUSTER.lock().unwrap_or_else(|e| e.into_inner()) = Some(pg);
    config
}

extern "C" fn stop_cluster_at_exit() {
    let cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner()).take();
    // Dropping it runs `pg_ctl stop -m fast` and waits.
    drop(cluster);
    if let Some(dir) = CLUSTER_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Creates `berth_template_<fingerprint of the migrations>` and migrates it, unless a
/// finished one exists; returns its name. Marking it a template is the last step, so
/// a half-built one (its builder died) is recognised and rebuilt.
async fn ensure_template(admin: &tokio_postgres::Config) -> Result<String, String> {
    let name = format!("berth_template_{}", migrations::fingerprint());
    let quoted = quote_identifier(&name);
    let client = Database::from_config(admin.clone())
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
        .await
        .map_err(|e| e.to_string())?;
    let built = async {
        let ready: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)",
                &[&name],
            )
            .await?
            .get(0);
        if ready {
            return Ok(());
        }
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
            .await?;
        client
            .batch_execute(&format!("CREATE DATABASE {quoted}"))
            .await?;
        let mut config = admin.clone();
        config.dbname(&name);
        let applied = migrations::run(&Database::from_config(config)).await?;
        tracing::info!(template = %name, applied, "built the migrated template database");
        client
            .batch_execute(&format!(
                "ALTER DATABASE {quoted} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
            ))
            .await?;
        Ok::<(), berth_infrastructure::StoreError>(())
    }
    .await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await;
    built.map_err(|e| e.to_string())?;
    unlocked.map_err(|e| e.to_string())?;
    Ok(name)
}

/// A libpq `key=value` string for `config`.
pub fn conninfo(config: &tokio_postgres::Config) -> String {
    let mut parts = Vec::new();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    if !hosts.is_empty() {
        parts.push(("host", hosts.join(",")));
    }
    let addrs: Vec<String> = config
        .get_hostaddrs()
        .iter()
        .map(|a| a.to_string())
        .collect();
    if !addrs.is_empty() {
        parts.push(("hostaddr", addrs.join(",")));
    }
    let ports: Vec<String> = config.get_ports().iter().map(|p| p.to_string()).collect();
    if !ports.is_empty() {
        parts.push(("port", ports.join(",")));
    }
    if let Some(user) = config.get_user() {
        parts.push(("user", user.to_owned()));
    }
    if let Some(password) = config.get_password() {
        parts.push(("password", String::from_utf8_lossy(password).into_owned()));
    }
    if let Some(dbname) = config.get_dbname() {
        parts.push(("dbname", dbname.to_owned()));
    }
    parts
        .into_iter()
        .map(|(key, value)| {
            format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
