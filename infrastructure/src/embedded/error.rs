//! Why the embedded cluster could not be started or stopped.

use std::io;
use std::path::PathBuf;

use super::SOCKET_PATH_MAX;
use crate::StoreError;

/// Why the embedded cluster could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// No PostgreSQL server binaries were found.
    #[error("PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found {searched}: install the PostgreSQL server (for example `apt-get install postgresql`), or set DATABASE_URL to use an existing PostgreSQL server")]
    BinariesNotFound {
        /// Where we looked.
        searched: String,
    },
    /// The cluster was created by another major version than the binaries found.
    #[error("the cluster in {} was created by PostgreSQL {cluster}, but the binaries found are PostgreSQL {found}: install PostgreSQL {cluster} (for example `apt-get install postgresql-{cluster}`), or upgrade the cluster with pg_upgrade", data.display())]
    VersionMismatch {
        /// The cluster's data directory.
        data: PathBuf,
        /// The cluster's major version.
        cluster: String,
        /// The versions of the binaries found.
        found: String,
    },
    /// Running as root and the unprivileged user to run PostgreSQL as does not exist.
    #[error("PostgreSQL refuses to run as root and there is no unprivileged user `{user}` to run it as: create one (for example `useradd --system --create-home postgres`), run Berth as an ordinary user, or set DATABASE_URL to use an existing PostgreSQL server")]
    NoUnprivilegedUser {
        /// The user looked for.
        user: String,
    },
    /// The current uid has no user name, which `initdb` needs.
    #[error("the current uid {uid} has no entry in the user database, which PostgreSQL needs: add one, or set DATABASE_URL")]
    UnnamedUser {
        /// The uid.
        uid: u32,
    },
    /// Another user was asked for without the privilege to switch to it.
    #[error("running as `{current}`, Berth cannot run PostgreSQL as `{wanted}`: only root can switch users")]
    CannotSwitchUser {
        /// Who we are.
        current: String,
        /// Who was asked for.
        wanted: String,
    },
    /// The cluster's user cannot reach the data directory.
    #[error("PostgreSQL runs as `{user}` (it refuses root), and `{user}` cannot enter {} (mode {mode:o}, owner uid {owner}), a parent of the data directory: choose a data directory that user can reach (for example under /var/lib or /srv), or allow it through with `chmod o+x {}`", dir.display(), dir.display())]
    NotTraversable {
        /// The first directory it cannot enter.
        dir: PathBuf,
        /// The cluster's user.
        user: String,
        /// That directory's mode.
        mode: u32,
        /// That directory's owner.
        owner: u32,
    },
    /// The Unix socket path would not fit.
    #[error("the socket path {} is {len} bytes, over the {SOCKET_PATH_MAX}-byte limit for Unix sockets: choose a shorter data directory", path.display())]
    SocketPathTooLong {
        /// The socket path.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// Another process uses this cluster.
    #[error("the cluster in {} is in use by another Berth process (it holds the lock {}): stop that process, or choose another data directory", dir.display(), lock.display())]
    InUse {
        /// The cluster directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// Another Berth command held the cluster, without sharing it, for too long.
    #[error("the cluster in {} stayed held by another Berth command for {waited_secs} s (it holds the lock {}) and is not shared: wait until that command ends, or start `berth serve`, whose cluster every command shares", dir.display(), lock.display())]
    StillHeld {
        /// The cluster directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// How long we waited.
        waited_secs: u64,
    },
    /// The data directory holds something other than a cluster.
    #[error("{} is not empty and is not a PostgreSQL data directory: move its contents away, or choose another data directory", dir.display())]
    NotACluster {
        /// The directory.
        dir: PathBuf,
    },
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A PostgreSQL tool failed.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        /// The command.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed.
        output: String,
    },
    /// The server did not start, or did not stop.
    #[error("PostgreSQL {action}: {reason}\n--- last lines of {} ---\n{log_tail}", log.display())]
    Server {
        /// What failed: "did not start" or "did not stop".
        action: &'static str,
        /// What `pg_ctl` said.
        reason: String,
        /// The server log.
        log: PathBuf,
        /// Its last lines.
        log_tail: String,
    },
    /// Connecting, or creating the database, failed.
    #[error("preparing database `{database}` in the embedded cluster: {source}")]
    Database {
        /// The database.
        database: String,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// The blocking task running the PostgreSQL tools panicked or was cancelled.
    #[error("the embedded cluster task failed: {0}")]
    Task(String),
}

impl EmbeddedError {
    pub(super) fn io(context: String, source: io::Error) -> Self {
        Self::Io { context, source }
    }
}
