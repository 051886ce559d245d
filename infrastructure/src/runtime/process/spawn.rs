//! Spawning a server's program: a resolved absolute path, no shell, its own process
//! group, its own user when Berth is root, death with Berth, a cleared environment, and
//! pumps for its output.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use berth_application::runtime::RuntimeError;
use berth_domain::catalog::Transport;
use nix::unistd::Pid;
use secrecy::ExposeSecret;
use tokio::process::Command;
use tokio::sync::watch;

use super::stdio::StdioChannel;
use super::{identity, logs, orphans, Exit, Instance, Run};

/// `PATH` for children when Berth itself has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

impl Instance {
    pub(super) async fn spawn(&self) -> Result<Run, RuntimeError> {
        self.prepare_home()?;
        let port = match self.transport {
            Transport::Http => Some(free_port()?),
            Transport::Stdio => None,
        };

        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .current_dir(&self.home)
            .env_clear()
            .env("PATH", inherited_path())
            .env("HOME", &self.home)
            .env(
                "LANG",
                std::env::var_os("LANG").unwrap_or_else(|| "C.UTF-8".into()),
            );
        for (key, value) in &self.env {
            command.env(key, value.expose_secret());
        }
        if let Some(port) = port {
            // After the configuration: Berth connects to this port, so it must win.
            command.env("PORT", port.to_string());
        }
        if let Some(user) = &self.user {
            // A user with no account: name it, for programs that ask who they are.
            let name = format!("berth-{}", user.uid());
            command
                .uid(user.uid())
                .gid(user.uid())
                .env("USER", &name)
                .env("LOGNAME", &name);
        }
        crate::child::die_with_parent(command.as_std_mut(), libc::SIGKILL);
        command
            .stdin(if port.is_none() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);

        let mut child = command.spawn().map_err(|error| match error.kind() {
            std::io::ErrorKind::PermissionDenied if self.user.is_some() => {
                RuntimeError::CommandUnavailable {
                    command: self.program.display().to_string(),
                    reason: format!(
                        "{error}: server processes run as users of their own, and this one \
                         may not run it (is it under a directory only root may enter?)"
                    ),
                }
            }
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                RuntimeError::CommandUnavailable {
                    command: self.program.display().to_string(),
                    reason: error.to_string(),
                }
            }
            _ => RuntimeError::Failed(format!(
                "cannot start `{}`: {error}",
                self.program.display()
            )),
        })?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
            .ok_or_else(|| {
                RuntimeError::Failed("the process exited before it could be tracked".into())
            })?;
        tracing::info!(server_id = %self.server_id, pid = pid.as_raw(), program = %self.program.display(), "process started");
        let record = orphans::GroupRecord::of(pid.as_raw());
        match record {
            Some(record) => {
                if let Err(error) = orphans::write(&self.records, self.server_id, record) {
                    tracing::warn!(server_id = %self.server_id, %error, "cannot record the process group; a crash of Berth could leave its helpers running");
                }
            }
            None => {
                tracing::debug!(server_id = %self.server_id, "the process ended before it was recorded")
            }
        }

        let log = self.logs.begin_run().await;
        let mut pumps = Vec::new();
        if let Some(stderr) = child.stderr.take() {
            pumps.push(logs::pump_lines(stderr, log.clone()));
        }
        let stdout = child.stdout.take();
        let stdio = match (child.stdin.take(), stdout) {
            (Some(stdin), Some(stdout)) => Some(StdioChannel::new(stdin, stdout)),
            (None, Some(stdout)) => {
                pumps.push(logs::pump_lines(stdout, log));
                None
            }
            _ => None,
        };

        let (exit_sender, exit) = watch::channel(None);
        let server_id = self.server_id;
        let records = self.records.clone();
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(status) => exit_code(status),
                Err(error) => {
                    tracing::warn!(%server_id, %error, "waiting for the process failed");
                    None
                }
            };
            // Report the exit only once its last words are in the log, so whoever reads
            // the logs of an exited process (the reason it failed) finds them. Bounded: a
            // grandchild may keep the pipe open long after the process itself is gone.
            let drained = futures_util::future::join_all(pumps);
            if tokio::time::timeout(OUTPUT_DRAIN, drained).await.is_err() {
                tracing::debug!(%server_id, "output still open after exit; not waiting longer");
            }
            // The server is its process group: helpers its leader left behind end with it.
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            if let Some(record) = record {
                orphans::remove_if_recorded(&records, server_id, record);
            }
            tracing::info!(%server_id, ?code, "process exited");
            let _ = exit_sender.send(Some(Exit { code }));
        });
        Ok(Run {
            pid,
            exit,
            stdio,
            port,
        })
    }
}

impl Instance {
    /// The server's private home: mode 0700, its own user's when it has one, below
    /// directories that user may search but not list.
    fn prepare_home(&self) -> Result<(), RuntimeError> {
        let failed = |error: std::io::Error| {
            RuntimeError::Failed(format!(
                "cannot prepare the home directory {}: {error}",
                self.home.display()
            ))
        };
        if self.user.is_some() {
            // A home left by an earlier run belongs to the user id that run had: start
            // afresh rather than hand this one files it cannot write.
            match std::fs::remove_dir_all(&self.home) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(failed(error))
                }
                _ => {}
            }
        }
        std::fs::create_dir_all(&self.home).map_err(failed)?;
        std::fs::set_permissions(&self.home, std::fs::Permissions::from_mode(0o700))
            .map_err(failed)?;
        if let Some(user) = &self.user {
            // `<log_dir>/home/<id>`: the two levels above are Berth's own.
            for dir in self.home.ancestors().skip(1).take(2) {
                identity::make_searchable_only(dir)?;
            }
            if let Some(log_dir) = self.home.ancestors().nth(2) {
                identity::check_reachable(log_dir)?;
            }
            identity::give_to(&self.home, user.uid())?;
        }
        Ok(())
    }
}

/// How long an exited process's output pumps get to finish before the exit is reported.
const OUTPUT_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Berth's own `PATH`, which children inherit so `npx` finds `node`.
pub(super) fn inherited_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into())
}

/// The absolute path of `command`: itself when it names a path, else the first
/// executable of that name on `path`.
pub(super) fn resolve_program(command: &str, path: &OsString) -> Result<PathBuf, RuntimeError> {
    let unavailable = |reason: String| RuntimeError::CommandUnavailable {
        command: command.to_owned(),
        reason,
    };
    if command.is_empty() {
        return Err(unavailable("the command is empty".into()));
    }
    if command.contains('/') {
        let program = std::env::current_dir()
            .map(|cwd| cwd.join(command))
            .unwrap_or_else(|_| PathBuf::from(command));
        return if is_executable(&program) {
            Ok(program)
        } else {
            Err(unavailable(format!(
                "{} is not an executable file",
                program.display()
            )))
        };
    }
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(command))
        .find(|program| is_executable(program))
        .ok_or_else(|| {
            unavailable(format!(
                "no executable of that name on PATH ({}); install it or name it by its full path",
                path.to_string_lossy()
            ))
        })
}

fn is_executable(program: &Path) -> bool {
    std::fs::metadata(program)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The exit code, or 128 + the signal for a killed process (as shells and Docker say).
fn exit_code(status: ExitStatus) -> Option<i64> {
    status
        .code()
        .map(i64::from)
        .or_else(|| status.signal().map(|signal| 128 + i64::from(signal)))
}

fn free_port() -> Result<u16, RuntimeError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| {
            RuntimeError::Failed(format!("cannot find a free port for the server: {error}"))
        })
}
