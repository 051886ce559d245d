//! Who a server's process runs as.
//!
//! When Berth runs as root, no server process does: each runs under a user id of its
//! own, taken from a range no account uses, with no supplementary groups. It cannot
//! read Berth's data directory (the admin token, master key, signing key and cluster
//! password are root's, mode 0600; the cluster is the `postgres` user's, 0700), another
//! server's home, logs or environment (`/proc/<pid>/environ` is readable by its own
//! user only), nor signal another server. When Berth is not root it cannot switch users:
//! servers run as Berth's own user, which is why only administrators may write
//! `process` entries.

use std::collections::HashSet;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use berth_application::runtime::RuntimeError;
use nix::unistd::{Gid, Uid};

/// User ids handed to server processes: far above accounts (`useradd` stops at 60000)
/// and above the subordinate-id ranges container engines use (100000 + 65536 × n).
pub const UID_RANGE: Range<u32> = 1_800_000_000..1_801_048_576;

/// The user ids of server processes, handed out and taken back.
#[derive(Debug)]
pub struct UidPool {
    range: Range<u32>,
    state: Mutex<PoolState>,
}

#[derive(Debug)]
struct PoolState {
    in_use: HashSet<u32>,
    /// Where the next search starts: ids are handed out in turn, so one freed a moment
    /// ago is not the next one given (files it left in `/tmp` are not a new server's).
    cursor: u32,
}

/// A user id held by one server's process; given back when dropped.
#[derive(Debug)]
pub struct ServerUid {
    uid: u32,
    pool: Arc<UidPool>,
}

impl ServerUid {
    /// The id, also used as the group id.
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

impl Drop for ServerUid {
    fn drop(&mut self) {
        self.pool.lock().in_use.remove(&self.uid);
    }
}

impl UidPool {
    /// A pool handing out ids from `range`.
    pub fn new(range: Range<u32>) -> Arc<Self> {
        let span = range.end.saturating_sub(range.start).max(1);
        let cursor = range.start + rand::random::<u32>() % span;
        Arc::new(Self {
            range,
            state: Mutex::new(PoolState {
                in_use: HashSet::new(),
                cursor,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An id no server of this Berth holds and no process on this host runs as (another
    /// installation's servers included).
    pub fn take(self: &Arc<Self>) -> Result<ServerUid, RuntimeError> {
        let busy = uids_of_running_processes();
        let mut state = self.lock();
        let span = self.range.end - self.range.start;
        for step in 0..span {
            let uid = self.range.start + (state.cursor - self.range.start + step) % span;
            if !state.in_use.contains(&uid) && !busy.contains(&uid) {
                state.in_use.insert(uid);
                state.cursor = if uid + 1 < self.range.end {
                    uid + 1
                } else {
                    self.range.start
                };
                return Ok(ServerUid {
                    uid,
                    pool: Arc::clone(self),
                });
            }
        }
        Err(RuntimeError::Failed(
            "every user id set aside for server processes is in use".into(),
        ))
    }
}

/// The real user ids of every process on the host.
fn uids_of_running_processes() -> HashSet<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashSet::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter_map(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .collect()
}

/// Whether server processes must run as users of their own: only root can switch.
pub fn switching_users() -> bool {
    Uid::effective().is_root()
}

/// Makes `dir` (Berth's own) searchable but not listable or writable by anyone else
/// (mode 0711), so a server's process can reach its home below it and learn nothing
/// else there: not which other servers exist, nor their logs.
pub fn make_searchable_only(dir: &Path) -> Result<(), RuntimeError> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| RuntimeError::Failed(format!("cannot read {}: {e}", dir.display())))?;
    if meta.permissions().mode() & 0o7777 != 0o711 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).map_err(|e| {
            RuntimeError::Failed(format!("cannot set the mode of {}: {e}", dir.display()))
        })?;
    }
    Ok(())
}

/// Fails naming the first directory above `dir` other users cannot search: a server
/// running as its own user could not reach its home there.
pub fn check_reachable(dir: &Path) -> Result<(), RuntimeError> {
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            continue;
        };
        if meta.permissions().mode() & 0o001 == 0 {
            return Err(RuntimeError::Failed(format!(
                "server processes run as users of their own and cannot enter {} (mode {:o}): \
                 put Berth's data directory where every user may search (e.g. under /var/lib \
                 or /srv), or make {0} searchable (chmod o+x)",
                ancestor.display(),
                meta.permissions().mode() & 0o7777
            )));
        }
    }
    Ok(())
}

/// Gives `path` to `uid` (as user and group).
pub fn give_to(path: &Path, uid: u32) -> Result<(), RuntimeError> {
    nix::unistd::chown(path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(uid))).map_err(|e| {
        RuntimeError::Failed(format!(
            "cannot give {} to the server's user {uid}: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_handed_out_in_turn_and_taken_back() {
        let pool = UidPool::new(10..13);
        let a = pool.take().expect("a");
        let b = pool.take().expect("b");
        let c = pool.take().expect("c");
        let mut all = vec![a.uid(), b.uid(), c.uid()];
        all.sort_unstable();
        assert_eq!(all, vec![10, 11, 12]);
        assert!(pool.take().is_err(), "the range is used up");
        let freed = b.uid();
        drop(b);
        assert_eq!(pool.take().expect("again").uid(), freed);
    }

    #[test]
    fn an_id_a_process_runs_as_is_never_handed_out() {
        let mine = nix::unistd::getuid().as_raw();
        let pool = UidPool::new(mine..mine + 1);
        assert!(pool.take().is_err(), "uid {mine} runs this test");
    }
}
