//! A private PostgreSQL cluster in Berth's data directory, run from the machine's own
//! PostgreSQL binaries: the default database when no `DATABASE_URL` is given.
//!
//! Layout of `<data_dir>/pg/` (owned by the cluster's OS user, mode 0700): `data/` is
//! the cluster, `postgres.log` its server log, the Unix socket sits in `pg/` itself,
//! `superuser.password` is used only for TCP, and `berth.lock` marks the process using it.

mod cluster_dir;
mod error;
mod host;

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use nix::fcntl::Flock;

use crate::db::Database;
use crate::StoreError;
use cluster_dir::{
    announce_owner, connection, init, lock, read_owner, read_version, rotate_log, tail,
    withdraw_owner, write_settings, Layout,
};
pub use error::EmbeddedError;
use host::{find_binaries, Binaries, ClusterUser};

/// The port used when listening only on the Unix socket (it names the socket file).
pub const DEFAULT_PORT: u16 = 5432;
/// `sun_path` holds 108 bytes including the terminating NUL.
const SOCKET_PATH_MAX: usize = 107;

/// Where the cluster accepts connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    /// Only the Unix socket in the cluster directory (the default): nothing else on the
    /// machine can reach it except through that private directory.
    UnixSocket,
    /// Also `127.0.0.1:port`, with a generated superuser password.
    Tcp {
        /// The TCP port.
        port: u16,
    },
}

/// How to start the embedded cluster.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Berth's data directory; the cluster lives in `<data_dir>/pg`.
    pub data_dir: PathBuf,
    /// Whether PostgreSQL flushes to disk. Only tests turn this off: a crash of the
    /// machine can then corrupt the cluster.
    pub fsync: bool,
    /// Where it listens.
    pub listen: Listen,
    /// The directory of `initdb`, `pg_ctl` and `postgres`; found on `PATH` or in
    /// `/usr/lib/postgresql/*/bin` when unset.
    pub bin_dir: Option<PathBuf>,
    /// The OS user running PostgreSQL when Berth runs as root (default `postgres`).
    pub run_as: Option<String>,
    /// The database to create if missing and connect to.
    pub database: String,
    /// PostgreSQL's `max_connections`; its own default when unset.
    pub max_connections: Option<u32>,
    /// How long to wait for the server to accept connections.
    pub start_timeout: Duration,
    /// Run the server in its own process group, so a terminal's Ctrl-C reaches only
    /// Berth, which then stops the cluster after draining. Tests turn it off so an
    /// interrupted run takes its cluster down with it.
    pub own_process_group: bool,
    /// Say in the lock file where the running cluster listens, so other Berth processes
    /// may use it beside this one ([`try_join`]). `berth serve` does; a one-shot command
    /// does not, and is waited for instead: it stops the cluster when it ends.
    pub announce: bool,
}

impl EmbeddedOptions {
    /// Defaults: durable, Unix socket only, database `berth`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            fsync: true,
            listen: Listen::UnixSocket,
            bin_dir: None,
            run_as: None,
            database: "berth".to_owned(),
            max_connections: None,
            start_timeout: Duration::from_secs(60),
            own_process_group: true,
            announce: false,
        }
    }
}

/// Connects to the cluster under `data_dir` that another Berth process runs and
/// announced (a `berth serve`), without taking it over: this process never stops it.
/// `None` when no holder announces one that answers now (none runs, or a one-shot command
/// holds it, or its holder is starting or stopping): try to start it, or wait.
pub async fn try_join(data_dir: &Path, database: &str) -> Result<Option<Database>, EmbeddedError> {
    let data_dir = fs::canonicalize(data_dir)
        .map_err(|e| EmbeddedError::io(format!("resolving {}", data_dir.display()), e))?;
    let layout = Layout::new(&data_dir);
    let Some((port, user)) = read_owner(&layout)? else {
        return Ok(None);
    };
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(&layout.root)
        .port(port)
        .user(&user)
        .dbname(database)
        .application_name("berth")
        .connect_timeout(Duration::from_secs(10));
    let joined = Database::from_config(config);
    match joined.connect().await {
        Ok(_) => Ok(Some(joined)),
        Err(e) => {
            tracing::debug!(error = %e, "the announced embedded cluster does not answer");
            Ok(None)
        }
    }
}

/// A running private PostgreSQL cluster, stopped by [`EmbeddedPostgres::stop`] or,
/// failing that, when dropped.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    layout: Layout,
    binaries: Binaries,
    user: ClusterUser,
    database: Database,
    port: u16,
    running: bool,
    lock: Flock<File>,
}

impl EmbeddedPostgres {
    /// Creates the cluster on first use (`initdb`), starts it, waits until it accepts
    /// connections and creates the configured database if missing. A cluster left
    /// running by a process that died is restarted with the current settings.
    pub async fn start(options: EmbeddedOptions) -> Result<Self, EmbeddedError> {
        let database = options.database.clone();
        let announce = options.announce;
        let mut pg = tokio::task::spawn_blocking(move || Self::start_blocking(&options))
            .await
            .map_err(|e| EmbeddedError::Task(e.to_string()))??;
        if let Err(source) = pg.ensure_database(&database).await {
            if let Err(e) = pg.stop().await {
                tracing::warn!(error = %e, "stopping the embedded cluster after a failed start");
            }
            return Err(EmbeddedError::Database { database, source });
        }
        if announce {
            // Only now: a guest arriving earlier could meet a server about to restart.
            announce_owner(&mut pg.lock, &pg.layout, pg.port, &pg.user.name)?;
        }
        Ok(pg)
    }

    /// Connection settings for the configured database, as the cluster's superuser.
    pub fn database(&self) -> Database {
        self.database.clone()
    }

    /// The cluster directory, `<data_dir>/pg`.
    pub fn cluster_dir(&self) -> &Path {
        &self.layout.root
    }

    /// The directory holding the Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.layout.root
    }

    /// The port (it also names the Unix socket).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server log.
    pub fn log_file(&self) -> &Path {
        &self.layout.log
    }

    /// The OS user that owns and runs the cluster, also its superuser's name.
    pub fn os_user(&self) -> &str {
        &self.user.name
    }

    /// Stops the server (`pg_ctl stop -m fast`), leaving every file in place.
    pub async fn stop(mut self) -> Result<(), EmbeddedError> {
        tokio::task::spawn_blocking(move || self.stop_now())
            .await
            .map_err(|e| EmbeddedError::Task(e.to_string()))?
    }

    fn start_blocking(options: &EmbeddedOptions) -> Result<Self, EmbeddedError> {
        let user = ClusterUser::resolve(options.run_as.as_deref())?;
        let shown = options.data_dir.display();
        fs::create_dir_all(&options.data_dir)
            .map_err(|e| EmbeddedError::io(format!("creating {shown}"), e))?;
        let data_dir = fs::canonicalize(&options.data_dir)
            .map_err(|e| EmbeddedError::io(format!("resolving {shown}"), e))?;
        user.check_traversable(&data_dir)?;
        let layout = Layout::new(&data_dir);
        match fs::DirBuilder::new().mode(0o700).create(&layout.root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                let context = format!("creating {}", layout.root.display());
                return Err(EmbeddedError::io(context, e));
            }
        }
        user.own(&layout.root)?;

        let port = match options.listen {
            Listen::UnixSocket => DEFAULT_PORT,
            Listen::Tcp { port } => port,
        };
        let socket = layout.root.join(format!(".s.PGSQL.{port}"));
        let len = socket.as_os_str().len();
        if len > SOCKET_PATH_MAX {
            return Err(EmbeddedError::SocketPathTooLong { path: socket, len });
        }
        let mut lock = lock(&layout, &user)?;
        // Nothing from an earlier holder may send a guest here before this one is up.
        withdraw_owner(&mut lock);

        let existing = read_version(&layout.pgdata)?;
        let binaries = find_binaries(
            options.bin_dir.as_deref(),
            existing.as_deref(),
            &layout.pgdata,
        )?;
        tracing::debug!(bin_dir = %binaries.dir.display(), "using PostgreSQL binaries");
        if existing.is_none() {
            init(&binaries, &user, &layout, options.fsync)?;
        }
        write_settings(&user, &layout, options, port)?;
        let database = connection(&user, &layout, options, port)?;

        let mut pg = Self {
            layout,
            binaries,
            user,
            database,
            port,
            running: false,
            lock,
        };
        if pg.is_running()? {
            tracing::warn!(
                dir = %pg.layout.pgdata.display(),
                "the cluster was left running by a process that did not stop it; restarting it"
            );
            pg.pg_ctl_stop()?;
        }
        rotate_log(&pg.layout.log);
        pg.pg_ctl_start(options)?;
        pg.running = true;
        tracing::info!(
            dir = %pg.layout.root.display(),
            user = %pg.user.name,
            listen = ?options.listen,
            "embedded PostgreSQL started"
        );
        Ok(pg)
    }

    async fn ensure_database(&self, name: &str) -> Result<(), StoreError> {
        let mut admin = self.database.config().clone();
        admin.dbname("postgres");
        let client = Database::from_config(admin).connect().await?;
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                &[&name],
            )
            .await?
            .get(0);
        if exists {
            return Ok(());
        }
        let create = format!("CREATE DATABASE {}", quote_identifier(name));
        match client.batch_execute(&create).await {
            Ok(()) => {
                tracing::info!(database = name, "created database");
                Ok(())
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Output, EmbeddedError> {
        let mut cmd = self
            .user
            .command(&self.binaries.pg_ctl(), &self.layout.root);
        cmd.args(args).arg("-D").arg(&self.layout.pgdata);
        cmd.output().map_err(|e| {
            EmbeddedError::io(format!("running {}", self.binaries.pg_ctl().display()), e)
        })
    }

    /// `pg_ctl status`: 0 running, 3 not running; it checks the pid in postmaster.pid
    /// is alive, so a stale file left by a crash reads as not running. After a reboot
    /// (or a container restart) that pid may belong to an unrelated process of the
    /// same user: then the file is stale, and is removed rather than that process
    /// signalled.
    fn is_running(&self) -> Result<bool, EmbeddedError> {
        if !self.pg_ctl(&["status"])?.status.success() {
            return Ok(false);
        }
        let pidfile = self.layout.pgdata.join("postmaster.pid");
        let pid = fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()));
        let Some(pid) = pid else {
            return Ok(true);
        };
        match fs::read(format!("/proc/{pid}/cmdline")) {
            Ok(cmdline) if !is_postmaster(&String::from_utf8_lossy(&cmdline)) => {
                tracing::warn!(
                    pid,
                    "postmaster.pid names a process that is not PostgreSQL; removing it"
                );
                fs::remove_file(&pidfile).map_err(|e| {
                    EmbeddedError::io(format!("removing stale {}", pidfile.display()), e)
                })?;
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    fn pg_ctl_start(&self, options: &EmbeddedOptions) -> Result<(), EmbeddedError> {
        use std::os::unix::process::CommandExt;
        let timeout = options.start_timeout.as_secs().max(1).to_string();
        let mut cmd = self
            .user
            .command(&self.binaries.pg_ctl(), &self.layout.root);
        cmd.args(["start", "-w", "-s", "-t", &timeout, "-D"])
            .arg(&self.layout.pgdata)
            .arg("-l")
            .arg(&self.layout.log);
        if options.own_process_group {
            cmd.process_group(0);
        }
        let out = cmd.output().map_err(|e| {
            EmbeddedError::io(format!("running {}", self.binaries.pg_ctl().display()), e)
        })?;
        if out.status.success() {
            return Ok(());
        }
        Err(self.server_error("did not start", &out))
    }

    fn pg_ctl_stop(&self) -> Result<(), EmbeddedError> {
        let out = self.pg_ctl(&["stop", "-m", "fast", "-w", "-s", "-t", "60"])?;
        if out.status.success() || !self.is_running()? {
            return Ok(());
        }
        Err(self.server_error("did not stop", &out))
    }

    fn stop_now(&mut self) -> Result<(), EmbeddedError> {
        if !self.running {
            return Ok(());
        }
        // One attempt only: Drop must not wait a second time for a server that hangs.
        self.running = false;
        withdraw_owner(&mut self.lock);
        self.pg_ctl_stop()?;
        tracing::info!(dir = %self.layout.root.display(), "embedded PostgreSQL stopped");
        Ok(())
    }

    fn server_error(&self, action: &'static str, out: &Output) -> EmbeddedError {
        EmbeddedError::Server {
            action,
            reason: format!("pg_ctl exited with {}: {}", out.status, printed(out).trim()),
            log: self.layout.log.clone(),
            log_tail: tail(&self.layout.log, 40),
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(e) = self.stop_now() {
            tracing::error!(error = %e, "stopping the embedded PostgreSQL cluster");
        }
    }
}

fn is_postmaster(cmdline: &str) -> bool {
    cmdline.contains("postgres") || cmdline.contains("postmaster")
}

/// What a command printed, stdout then stderr.
fn printed(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

/// A double-quoted SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
