//! The files of the cluster directory `<data_dir>/pg`: its lock, `initdb`, the
//! settings Berth writes at each start, and the server log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use rand::RngCore;

use super::host::{Binaries, ClusterUser};
use super::{printed, EmbeddedError, EmbeddedOptions, Listen};
use crate::db::Database;

/// The server log is moved aside at start once it grows past this.
const LOG_ROTATE_BYTES: u64 = 16 << 20;

/// The paths inside `<data_dir>/pg`.
#[derive(Clone, Debug)]
pub(super) struct Layout {
    pub root: PathBuf,
    pub pgdata: PathBuf,
    pub log: PathBuf,
    pub password: PathBuf,
    pub lock: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Self {
        let root = data_dir.join("pg");
        Self {
            pgdata: root.join("data"),
            log: root.join("postgres.log"),
            password: root.join("superuser.password"),
            lock: root.join("berth.lock"),
            root,
        }
    }
}

/// Takes `berth.lock` so two processes never drive one cluster. It is released by the
/// kernel when this process dies, however it dies. Its holder writes where the cluster
/// listens into it ([`announce_owner`]), so other Berth processes can join it.
pub(super) fn lock(layout: &Layout, user: &ClusterUser) -> Result<Flock<File>, EmbeddedError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&layout.lock)
        .map_err(|e| EmbeddedError::io(format!("opening {}", layout.lock.display()), e))?;
    // Owned like the rest, so the cluster's own user may run Berth on it later.
    user.own(&layout.lock)?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == Errno::EWOULDBLOCK {
            EmbeddedError::InUse {
                dir: layout.root.clone(),
                lock: layout.lock.clone(),
            }
        } else {
            EmbeddedError::io(format!("locking {}", layout.lock.display()), errno.into())
        }
    })
}

/// Records, in the held lock file, the port naming the cluster's Unix socket and the
/// superuser: what a process joining the running cluster needs.
pub(super) fn announce_owner(
    lock: &mut Flock<File>,
    layout: &Layout,
    port: u16,
    user: &str,
) -> Result<(), EmbeddedError> {
    let file: &mut File = lock;
    let written = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{port}\n{user}"));
    written.map_err(|e| EmbeddedError::io(format!("writing {}", layout.lock.display()), e))
}

/// What the lock's holder announced: the port and the superuser, once both are written.
pub(super) fn read_owner(layout: &Layout) -> Result<Option<(u16, String)>, EmbeddedError> {
    let text = match fs::read_to_string(&layout.lock) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(EmbeddedError::io(
                format!("reading {}", layout.lock.display()),
                e,
            ))
        }
    };
    let mut lines = text.lines();
    let port = lines.next().and_then(|l| l.trim().parse::<u16>().ok());
    let user = lines.next().map(str::trim).filter(|u| !u.is_empty());
    Ok(port.zip(user.map(str::to_owned)))
}

/// Clears the announcement: a process stopping the cluster takes no more guests.
pub(super) fn withdraw_owner(lock: &mut Flock<File>) {
    let file: &mut File = lock;
    if let Err(e) = file.set_len(0) {
        tracing::warn!(error = %e, "could not clear the embedded cluster's announcement");
    }
}

/// The major version of an initialised cluster, `None` if there is none yet.
pub(super) fn read_version(pgdata: &Path) -> Result<Option<String>, EmbeddedError> {
    match fs::read_to_string(pgdata.join("PG_VERSION")) {
        Ok(v) => Ok(Some(v.trim().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EmbeddedError::io(
            format!("reading {}/PG_VERSION", pgdata.display()),
            e,
        )),
    }
}

/// Runs `initdb` into a scratch directory renamed into place on success, so an
/// interrupted first start never leaves a half-made cluster that looks complete.
pub(super) fn init(
    binaries: &Binaries,
    user: &ClusterUser,
    layout: &Layout,
    fsync: bool,
) -> Result<(), EmbeddedError> {
    let io =
        |what: &str, path: &Path, e| EmbeddedError::io(format!("{what} {}", path.display()), e);
    match fs::read_dir(&layout.pgdata) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(EmbeddedError::NotACluster {
                    dir: layout.pgdata.clone(),
                });
            }
            fs::remove_dir(&layout.pgdata).map_err(|e| io("removing", &layout.pgdata, e))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("reading", &layout.pgdata, e)),
    }
    let scratch = layout.root.join("data.initdb");
    if scratch.exists() {
        fs::remove_dir_all(&scratch).map_err(|e| io("removing", &scratch, e))?;
    }
    if !layout.password.exists() {
        let mut secret = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&layout.password)
            .map_err(|e| io("creating", &layout.password, e))?;
        writeln!(file, "{}", hex::encode(secret))
            .map_err(|e| io("writing", &layout.password, e))?;
        user.own(&layout.password)?;
    }

    tracing::info!(dir = %layout.pgdata.display(), user = %user.name, "initialising a PostgreSQL cluster");
    let mut cmd = user.command(&binaries.initdb(), &layout.root);
    cmd.arg("-D")
        .arg(&scratch)
        .args(["-U", &user.name])
        .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
        .arg(format!("--pwfile={}", layout.password.display()))
        .args(["--encoding=UTF8", "--locale=C"]);
    if !fsync {
        cmd.arg("--no-sync");
    }
    let out = cmd
        .output()
        .map_err(|e| EmbeddedError::io(format!("running {}", binaries.initdb().display()), e))?;
    if !out.status.success() {
        return Err(EmbeddedError::Command {
            command: format!("{} -D {}", binaries.initdb().display(), scratch.display()),
            status: out.status.to_string(),
            output: printed(&out),
        });
    }
    let conf = scratch.join("postgresql.conf");
    let mut file = OpenOptions::new()
        .append(true)
        .open(&conf)
        .map_err(|e| io("opening", &conf, e))?;
    file.write_all(
        b"\n# Settings Berth rewrites at every start.\ninclude_if_exists = 'berth.conf'\n",
    )
    .map_err(|e| io("writing", &conf, e))?;
    fs::rename(&scratch, &layout.pgdata)
        .map_err(|e| io("moving the new cluster to", &layout.pgdata, e))
}

/// Writes `berth.conf`, included by `postgresql.conf`: listening, durability and
/// limits follow the options of this start, not those of the first.
pub(super) fn write_settings(
    user: &ClusterUser,
    layout: &Layout,
    options: &EmbeddedOptions,
    port: u16,
) -> Result<(), EmbeddedError> {
    let listen = match options.listen {
        Listen::UnixSocket => "",
        Listen::Tcp { .. } => "127.0.0.1",
    };
    let mut conf = String::from(
        "# Written by Berth at every start: edits are lost. Use ALTER SYSTEM instead.\n",
    );
    conf += &format!("listen_addresses = '{listen}'\nport = {port}\n");
    conf += &format!(
        "unix_socket_directories = {}\n",
        quote_setting(&layout.root.to_string_lossy())
    );
    if options.fsync {
        conf += "fsync = on\n";
    } else {
        conf += "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n";
    }
    if let Some(max) = options.max_connections {
        conf += &format!("max_connections = {max}\n");
    }
    let path = layout.pgdata.join("berth.conf");
    let written = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(conf.as_bytes()));
    written.map_err(|e| EmbeddedError::io(format!("writing {}", path.display()), e))?;
    user.own(&path)
}

pub(super) fn connection(
    user: &ClusterUser,
    layout: &Layout,
    options: &EmbeddedOptions,
    port: u16,
) -> Result<Database, EmbeddedError> {
    let mut config = tokio_postgres::Config::new();
    match options.listen {
        Listen::UnixSocket => {
            config.host_path(&layout.root);
        }
        Listen::Tcp { .. } => {
            let password = fs::read_to_string(&layout.password).map_err(|e| {
                EmbeddedError::io(format!("reading {}", layout.password.display()), e)
            })?;
            config.host("127.0.0.1").password(password.trim());
        }
    }
    config
        .port(port)
        .user(&user.name)
        .dbname(&options.database)
        .application_name("berth")
        .connect_timeout(Duration::from_secs(10));
    Ok(Database::from_config(config))
}

pub(super) fn rotate_log(log: &Path) {
    if fs::metadata(log).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        if let Err(e) = fs::rename(log, log.with_extension("log.1")) {
            tracing::warn!(error = %e, log = %log.display(), "could not rotate the server log");
        }
    }
}

/// The last `lines` lines of `path` (at most its last 16 KiB).
pub(super) fn tail(path: &Path, lines: usize) -> String {
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(no log: {e})"),
    }
}

/// A single-quoted `postgresql.conf` string.
fn quote_setting(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}
