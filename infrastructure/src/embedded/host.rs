//! What the embedded cluster needs from the machine: the PostgreSQL binaries, the
//! unprivileged user that runs them, and a data directory that user can reach.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::unistd::{Uid, User};

use super::EmbeddedError;

/// Where Debian-style packages install each major version's binaries.
const VERSIONED_BIN_ROOT: &str = "/usr/lib/postgresql";

/// A directory holding `initdb`, `pg_ctl` and `postgres`.
#[derive(Clone, Debug)]
pub(super) struct Binaries {
    pub dir: PathBuf,
}

impl Binaries {
    pub fn initdb(&self) -> PathBuf {
        self.dir.join("initdb")
    }

    pub fn pg_ctl(&self) -> PathBuf {
        self.dir.join("pg_ctl")
    }

    /// The major version, from `pg_ctl --version` (`pg_ctl (PostgreSQL) 15.18 (…)`).
    fn major_version(&self) -> Option<String> {
        let out = Command::new(self.pg_ctl())
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text
            .split("(PostgreSQL)")
            .nth(1)?
            .split_whitespace()
            .next()?;
        Some(version.split('.').next()?.to_owned())
    }

    fn complete(dir: &Path) -> bool {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| is_executable(&dir.join(b)))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Every directory holding the three binaries: `initdb` on `PATH` (followed through
/// symlinks, since packages link only some binaries there), then
/// `/usr/lib/postgresql/<major>/bin`, newest first.
fn candidates() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut push = |dir: PathBuf| {
        if Binaries::complete(&dir) && !found.contains(&dir) {
            found.push(dir);
        }
    };
    if let Some(path) = std::env::var_os("PATH") {
        for entry in std::env::split_paths(&path) {
            let initdb = entry.join("initdb");
            if let Ok(real) = std::fs::canonicalize(&initdb) {
                if let Some(dir) = real.parent() {
                    push(dir.to_owned());
                }
            }
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir(VERSIONED_BIN_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, e.path().join("bin")))
        })
        .collect();
    versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
    for (_, dir) in versioned {
        push(dir);
    }
    found
}

/// Finds the binaries: `explicit` if given, else the first candidate; for an existing
/// cluster (`cluster_major` set), the first candidate of that major version.
pub(super) fn find_binaries(
    explicit: Option<&Path>,
    cluster_major: Option<&str>,
    data: &Path,
) -> Result<Binaries, EmbeddedError> {
    let found: Vec<Binaries> = match explicit {
        Some(dir) if Binaries::complete(dir) => vec![Binaries {
            dir: dir.to_owned(),
        }],
        Some(dir) => {
            return Err(EmbeddedError::BinariesNotFound {
                searched: format!("in {}", dir.display()),
            })
        }
        None => candidates()
            .into_iter()
            .map(|dir| Binaries { dir })
            .collect(),
    };
    let Some(first) = found.first().cloned() else {
        return Err(EmbeddedError::BinariesNotFound {
            searched: format!("on PATH or in {VERSIONED_BIN_ROOT}/*/bin"),
        });
    };
    let Some(want) = cluster_major else {
        return Ok(first);
    };
    let mut seen = Vec::new();
    for bins in found {
        match bins.major_version() {
            Some(v) if v == want => return Ok(bins),
            Some(v) => seen.push(v),
            None => seen.push(format!("unknown ({})", bins.dir.display())),
        }
    }
    Err(EmbeddedError::VersionMismatch {
        data: data.to_owned(),
        cluster: want.to_owned(),
        found: seen.join(", "),
    })
}

/// The OS user that owns and runs the cluster.
#[derive(Clone, Debug)]
pub(super) struct ClusterUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Whether child processes must switch to this user (we are root).
    pub switch: bool,
}

impl ClusterUser {
    /// Ourselves, or when root (which PostgreSQL refuses) `run_as` or `postgres`.
    pub fn resolve(run_as: Option<&str>) -> Result<Self, EmbeddedError> {
        let euid = Uid::effective();
        if euid.is_root() {
            let name = run_as.unwrap_or("postgres");
            let user = User::from_name(name)
                .map_err(|e| EmbeddedError::io(format!("looking up user `{name}`"), e.into()))?
                .ok_or_else(|| EmbeddedError::NoUnprivilegedUser {
                    user: name.to_owned(),
                })?;
            if user.uid.is_root() {
                return Err(EmbeddedError::NoUnprivilegedUser {
                    user: name.to_owned(),
                });
            }
            return Ok(Self {
                name: user.name,
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
                switch: true,
            });
        }
        let me = User::from_uid(euid)
            .map_err(|e| EmbeddedError::io("looking up the current user".to_owned(), e.into()))?
            .ok_or(EmbeddedError::UnnamedUser { uid: euid.as_raw() })?;
        if let Some(other) = run_as.filter(|n| *n != me.name) {
            return Err(EmbeddedError::CannotSwitchUser {
                current: me.name,
                wanted: other.to_owned(),
            });
        }
        Ok(Self {
            name: me.name,
            uid: me.uid.as_raw(),
            gid: me.gid.as_raw(),
            switch: false,
        })
    }

    /// Fails with the first directory from `/` down to `dir` this user cannot search.
    /// Only the primary group counts: a process switched to this user by
    /// `Command::uid` has its supplementary groups dropped.
    pub fn check_traversable(&self, dir: &Path) -> Result<(), EmbeddedError> {
        use std::os::unix::fs::MetadataExt;
        if !self.switch {
            return Ok(());
        }
        for ancestor in dir.ancestors().collect::<Vec<_>>().into_iter().rev() {
            let meta = std::fs::metadata(ancestor)
                .map_err(|e| EmbeddedError::io(format!("reading {}", ancestor.display()), e))?;
            let mode = meta.mode();
            let searchable = if meta.uid() == self.uid {
                mode & 0o100 != 0
            } else if meta.gid() == self.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !searchable {
                return Err(EmbeddedError::NotTraversable {
                    dir: ancestor.to_owned(),
                    user: self.name.clone(),
                    mode: mode & 0o7777,
                    owner: meta.uid(),
                });
            }
        }
        Ok(())
    }

    /// Gives `path` to this user when we are root (no-op otherwise).
    pub fn own(&self, path: &Path) -> Result<(), EmbeddedError> {
        if !self.switch {
            return Ok(());
        }
        nix::unistd::chown(
            path,
            Some(Uid::from_raw(self.uid)),
            Some(nix::unistd::Gid::from_raw(self.gid)),
        )
        .map_err(|e| {
            EmbeddedError::io(
                format!("giving {} to {}", path.display(), self.name),
                e.into(),
            )
        })
    }

    /// A command that runs as this user, from `cwd` (which it can enter), stdin closed.
    pub fn command(&self, program: &Path, cwd: &Path) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(program);
        if self.switch {
            cmd.uid(self.uid).gid(self.gid);
        }
        cmd.current_dir(cwd).stdin(Stdio::null());
        for var in [
            "PGDATA",
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGOPTIONS",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }
}
