//! Records of the process groups Berth started, so that a Berth that died without
//! stopping them (`kill -9`, a crash, a power cut of the process only) has the next one
//! end them before it starts anything: a server never runs twice, and none is reported
//! gone while it still runs.
//!
//! A group's leader dies with Berth ([`crate::child::die_with_parent`]); what it spawned
//! (npx → node) shares its process group and is what this sweeps. Each record names the
//! group and its leader's start time, so a process id the kernel has since given to
//! someone else is never signalled.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use uuid::Uuid;

/// How long the sweep waits for a killed group to be gone.
const GONE_WAIT: Duration = Duration::from_secs(5);

/// One running group's record: `<dir>/<server id>.pid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRecord {
    /// The group's id, which is its leader's process id.
    pub pgid: i32,
    /// The leader's start time, in clock ticks after boot (`/proc/<pid>/stat`, field 22).
    pub started: u64,
}

impl GroupRecord {
    /// The record of the group led by `pid`, which must be running.
    pub fn of(pid: i32) -> Option<Self> {
        Some(Self {
            pgid: pid,
            started: stat(pid)?.started,
        })
    }

    fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        Some(Self {
            pgid: words.next()?.parse().ok()?,
            started: words.next()?.parse().ok()?,
        })
    }
}

/// The file recording `server_id`'s group.
pub fn record_path(dir: &Path, server_id: Uuid) -> PathBuf {
    dir.join(format!("{server_id}.pid"))
}

/// Records `record` for `server_id` (mode 0600).
pub fn write(dir: &Path, server_id: Uuid, record: GroupRecord) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let path = record_path(dir, server_id);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{} {}", record.pgid, record.started)
}

/// Forgets `server_id`'s record of `record` (its group ended or was stopped), unless a
/// newer run of the server has recorded its own group there since.
pub fn remove_if_recorded(dir: &Path, server_id: Uuid, record: GroupRecord) {
    let path = record_path(dir, server_id);
    let current = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| GroupRecord::parse(&text));
    if current == Some(record) {
        let _ = std::fs::remove_file(path);
    }
}

/// Ends every group recorded in `dir` that still has processes, and removes the
/// records. Returns how many processes were killed.
pub fn sweep(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "pid") {
            continue;
        }
        let record = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| GroupRecord::parse(&text));
        if let Some(record) = record {
            let members = survivors(record);
            if !members.is_empty() {
                tracing::warn!(
                    pgid = record.pgid,
                    processes = members.len(),
                    record = %path.display(),
                    "ending processes a previous Berth left running"
                );
                let _ = killpg(Pid::from_raw(record.pgid), Signal::SIGKILL);
                killed += members.len();
                let deadline = Instant::now() + GONE_WAIT;
                while !survivors(record).is_empty() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    killed
}

/// The live processes of the recorded group. The kernel does not reuse an id while a
/// group of that id has members, so members found are ours, unless the id names a new
/// leader (a start time other than the recorded one): then the group is someone else's.
fn survivors(record: GroupRecord) -> Vec<i32> {
    if let Some(leader) = stat(record.pgid) {
        if leader.started != record.started {
            return Vec::new();
        }
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            stat(*pid).is_some_and(|s| {
                s.pgid == record.pgid && s.started >= record.started && s.state != 'Z'
            })
        })
        .collect()
}

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    /// Its state letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Its process group.
    pub pgid: i32,
    /// When it started, in clock ticks after boot.
    pub started: u64,
}

/// Reads `/proc/<pid>/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from its closing parenthesis.
pub fn stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: 3 state, 4 ppid, 5 pgrp, ... 22 starttime.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgid: fields.get(2)?.parse().ok()?,
        started: fields.get(19)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn a_recorded_group_left_running_is_ended_with_everything_in_it() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // A leader that starts a child of its own in its group, as npx starts node.
        let mut leader = std::process::Command::new("sh")
            .args(["-c", "sleep 60 & sleep 60; wait"])
            .process_group(0)
            .spawn()
            .expect("spawning sh");
        let pgid = i32::try_from(leader.id()).expect("a pid");
        let record = GroupRecord::of(pgid).expect("the leader's stat");
        write(dir.path(), Uuid::nil(), record).expect("writing the record");
        let deadline = Instant::now() + Duration::from_secs(5);
        while survivors(record).len() < 3 {
            assert!(Instant::now() < deadline, "the group never had 3 members");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(sweep(dir.path()), 3);
        let _ = leader.wait();
        assert!(survivors(record).is_empty());
        assert!(!record_path(dir.path(), Uuid::nil()).exists());
    }

    #[test]
    fn a_record_whose_leader_id_was_reused_kills_nothing() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut other = std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .expect("spawning sleep");
        let pgid = i32::try_from(other.id()).expect("a pid");
        let actual = GroupRecord::of(pgid).expect("stat");
        // The record says this group's leader started earlier: another process had the id.
        let stale = GroupRecord {
            pgid,
            started: actual.started.saturating_sub(1),
        };
        write(dir.path(), Uuid::nil(), stale).expect("writing the record");
        assert_eq!(sweep(dir.path()), 0);
        assert!(
            stat(pgid).is_some_and(|s| s.state != 'Z'),
            "sleep was killed"
        );
        let _ = other.kill();
        let _ = other.wait();
    }
}
