//! The process runtime: each server is a local child process (`npx …`, `uvx …`) run
//! without a shell, in its own process group, with a cleared environment.
//!
//! Processes live only as long as this Berth process: the table of them is in memory,
//! each process is killed when Berth dies (however it dies), and whatever a Berth that
//! died left in their process groups is ended by the next one before it starts anything
//! ([`orphans`]). After a restart of Berth every server is missing here, and the
//! reconciler records that drift like a vanished container.
//!
//! When Berth runs as root, each process runs as a user of its own ([`identity`]).

pub mod identity;
mod logs;
pub mod orphans;
mod spawn;
mod stdio;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use berth_application::runtime::{
    ContainerRuntime, InstanceState, InstanceStatus, LaunchSpec, McpEndpoint, RuntimeError,
};
use berth_domain::catalog::{RuntimeSpec, Transport};
use futures_util::stream::BoxStream;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;
use uuid::Uuid;

use self::logs::LogBook;
use self::spawn::{inherited_path, resolve_program};
use self::stdio::StdioChannel;
use crate::runtime::{spec_hash, validate_env};

pub use self::logs::RING_LINES;

/// How long `connect` waits for an earlier stdio client to let go.
const STDIO_CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Runs MCP servers as local processes.
///
/// `create` checks that the program exists and is executable, `start` spawns it with
/// only `PATH`, `HOME` (a private directory), `LANG`, `PORT` (for `http` servers: a free
/// port, which Berth then connects to) and the server's own configuration in its
/// environment. Stderr (and, for `http` servers, stdout) is kept as log lines: the last
/// [`RING_LINES`] in memory, all of them appended to `<log_dir>/<server id>.log`.
///
/// Resource limits are not enforced here: a process has no cgroup of its own, and the
/// rlimits that exist measure other things (address space, processes per user). Use
/// the Docker runtime where limits matter.
#[derive(Debug)]
pub struct ProcessRuntime {
    log_dir: PathBuf,
    /// Where each running process group is recorded ([`orphans`]).
    records: PathBuf,
    /// User ids for server processes; `None` when Berth is not root and cannot switch.
    uids: Option<Arc<identity::UidPool>>,
    instances: Mutex<HashMap<Uuid, Arc<Instance>>>,
    /// Begins every instance id this runtime hands out (`proc-<run>-…`), new at each
    /// start of Berth: an id without it was made by an earlier Berth, whose processes
    /// ended with it.
    run: String,
}

#[derive(Debug)]
struct Instance {
    server_id: Uuid,
    instance_id: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, SecretString)>,
    transport: Transport,
    spec_hash: String,
    home: PathBuf,
    /// The user it runs as, when Berth switches users.
    user: Option<identity::ServerUid>,
    /// Where its running process group is recorded.
    records: PathBuf,
    logs: Arc<LogBook>,
    /// Serialises start, stop and remove of this instance.
    lifecycle: tokio::sync::Mutex<()>,
    /// `None` until first started.
    run: Mutex<Option<Run>>,
}

/// One spawn of the program.
#[derive(Debug)]
struct Run {
    pid: Pid,
    exit: watch::Receiver<Option<Exit>>,
    stdio: Option<StdioChannel>,
    port: Option<u16>,
}

#[derive(Debug, Clone, Copy)]
struct Exit {
    code: Option<i64>,
}

impl Run {
    fn exited(&self) -> Option<Exit> {
        *self.exit.borrow()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // `kill_on_drop` reaches only the leader; helpers it spawned (npx → node) share
        // its process group and must not outlive it.
        if self.exited().is_none() {
            let _ = killpg(self.pid, Signal::SIGKILL);
        }
    }
}

impl ProcessRuntime {
    /// A runtime keeping logs and the servers' home directories under `log_dir`
    /// (created when the first process starts). Call [`ProcessRuntime::end_leftovers`]
    /// first, so that nothing a dead Berth left runs twice.
    pub fn new(log_dir: PathBuf) -> Self {
        // Children run inside their home directory, so a relative `HOME` would point
        // somewhere else for them.
        let log_dir = std::path::absolute(&log_dir).unwrap_or(log_dir);
        Self {
            records: log_dir.join("run"),
            log_dir,
            uids: identity::switching_users().then(|| identity::UidPool::new(identity::UID_RANGE)),
            instances: Mutex::new(HashMap::new()),
            run: format!("proc-{}-", Uuid::new_v4().simple()),
        }
    }

    /// Ends every process a previous Berth with this `log_dir` left running (it died
    /// without stopping them) and returns how many there were.
    pub fn end_leftovers(log_dir: &Path) -> usize {
        let killed = orphans::sweep(&log_dir.join("run"));
        if killed > 0 {
            tracing::warn!(
                killed,
                "ended processes of servers a previous Berth left running"
            );
        }
        killed
    }

    fn table(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<Instance>>> {
        // Entries are replaced whole, so a panic elsewhere cannot leave one half-written.
        self.instances
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn instance(&self, server_id: Uuid) -> Option<Arc<Instance>> {
        self.table().get(&server_id).cloned()
    }

    fn prepare(&self, spec: &LaunchSpec) -> Result<Instance, RuntimeError> {
        let RuntimeSpec::Process { command, args } = &spec.runtime else {
            return Err(RuntimeError::Failed(
                "this catalog entry runs a container image; the process runtime runs only \
                 `process` entries"
                    .into(),
            ));
        };
        validate_env(spec)?;
        let path = spec
            .env
            .get("PATH")
            .map(|path| OsString::from(path.expose_secret()))
            .unwrap_or_else(inherited_path);
        let program = resolve_program(command, &path)?;
        let user = self.uids.as_ref().map(|pool| pool.take()).transpose()?;
        Ok(Instance {
            server_id: spec.server_id,
            instance_id: format!("{}{}", self.run, Uuid::new_v4().simple()),
            program,
            args: args.clone(),
            env: spec
                .env
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
            transport: spec.transport,
            spec_hash: spec_hash(spec),
            home: self.log_dir.join("home").join(spec.server_id.to_string()),
            user,
            records: self.records.clone(),
            logs: Arc::new(LogBook::new(
                self.log_dir.join(format!("{}.log", spec.server_id)),
            )),
            lifecycle: tokio::sync::Mutex::new(()),
            run: Mutex::new(None),
        })
    }
}

impl Instance {
    fn run(&self) -> MutexGuard<'_, Option<Run>> {
        // A run is replaced whole, so a poisoned lock still guards a consistent value.
        self.run
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn status(&self) -> InstanceStatus {
        let state = match self.run().as_ref() {
            None => InstanceState::Created,
            Some(run) => match run.exited() {
                None => InstanceState::Running,
                Some(exit) => InstanceState::Exited {
                    exit_code: exit.code,
                    oom_killed: false,
                },
            },
        };
        InstanceStatus {
            server_id: self.server_id,
            instance_id: self.instance_id.clone(),
            state,
        }
    }

    /// SIGTERM to the process group, SIGKILL after `grace`; returns once the leader is
    /// reaped.
    async fn stop(&self, grace: Duration) {
        let Some((pid, mut exit)) = self
            .run()
            .as_ref()
            .filter(|run| run.exited().is_none())
            .map(|run| (run.pid, run.exit.clone()))
        else {
            return;
        };
        let exited = |exit: &Option<Exit>| exit.is_some();
        if !grace.is_zero() {
            let _ = killpg(pid, Signal::SIGTERM);
            if tokio::time::timeout(grace, exit.wait_for(exited))
                .await
                .is_ok()
            {
                // Stragglers of the group that ignored SIGTERM.
                let _ = killpg(pid, Signal::SIGKILL);
                return;
            }
            tracing::info!(server_id = %self.server_id, ?grace, "process ignored SIGTERM; killing it");
        }
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = exit.wait_for(exited).await;
    }
}

#[async_trait]
impl ContainerRuntime for ProcessRuntime {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn made_by_this_run(&self, instance_id: &str) -> bool {
        instance_id.starts_with(&self.run)
    }

    #[tracing::instrument(skip_all, fields(server_id = %spec.server_id))]
    async fn create(&self, spec: &LaunchSpec) -> Result<String, RuntimeError> {
        let prepared = self.prepare(spec)?;
        if let Some(existing) = self.instance(spec.server_id) {
            if existing.spec_hash == prepared.spec_hash {
                return Ok(existing.instance_id.clone());
            }
            tracing::info!("launch spec changed; replacing the process");
            self.remove(spec.server_id).await?;
        }
        let mut table = self.table();
        let instance = table
            .entry(spec.server_id)
            .or_insert_with(|| Arc::new(prepared));
        Ok(instance.instance_id.clone())
    }

    #[tracing::instrument(skip_all, fields(server_id = %server_id))]
    async fn start(&self, server_id: Uuid) -> Result<(), RuntimeError> {
        let instance = self.instance(server_id).ok_or(RuntimeError::NotFound)?;
        let _lifecycle = instance.lifecycle.lock().await;
        if instance
            .run()
            .as_ref()
            .is_some_and(|run| run.exited().is_none())
        {
            return Ok(());
        }
        let run = instance.spawn().await?;
        *instance.run() = Some(run);
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(server_id = %server_id))]
    async fn stop(&self, server_id: Uuid, grace: Duration) -> Result<(), RuntimeError> {
        if let Some(instance) = self.instance(server_id) {
            let _lifecycle = instance.lifecycle.lock().await;
            instance.stop(grace).await;
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(server_id = %server_id))]
    async fn remove(&self, server_id: Uuid) -> Result<(), RuntimeError> {
        let Some(instance) = self.instance(server_id) else {
            return Ok(());
        };
        let _lifecycle = instance.lifecycle.lock().await;
        instance.stop(Duration::ZERO).await;
        {
            let mut table = self.table();
            if table
                .get(&server_id)
                .is_some_and(|current| Arc::ptr_eq(current, &instance))
            {
                table.remove(&server_id);
            }
        }
        warn_unless_missing(
            tokio::fs::remove_dir_all(&instance.home).await,
            &instance.home,
        );
        warn_unless_missing(
            tokio::fs::remove_file(instance.logs.file()).await,
            instance.logs.file(),
        );
        Ok(())
    }

    async fn shutdown(&self, grace: Duration) {
        let instances: Vec<_> = self.table().values().cloned().collect();
        futures_util::future::join_all(instances.iter().map(|instance| async move {
            let _lifecycle = instance.lifecycle.lock().await;
            instance.stop(grace).await;
        }))
        .await;
    }

    async fn inspect(&self, server_id: Uuid) -> Result<Option<InstanceStatus>, RuntimeError> {
        Ok(self.instance(server_id).map(|instance| instance.status()))
    }

    async fn list(&self) -> Result<Vec<InstanceStatus>, RuntimeError> {
        let instances: Vec<_> = self.table().values().cloned().collect();
        Ok(instances.iter().map(|instance| instance.status()).collect())
    }

    async fn logs(&self, server_id: Uuid, tail: usize) -> Result<Vec<String>, RuntimeError> {
        let instance = self.instance(server_id).ok_or(RuntimeError::NotFound)?;
        Ok(instance.logs.tail(tail))
    }

    async fn follow_logs(
        &self,
        server_id: Uuid,
        tail: usize,
    ) -> Result<BoxStream<'static, Result<String, RuntimeError>>, RuntimeError> {
        let instance = self.instance(server_id).ok_or(RuntimeError::NotFound)?;
        Ok(instance.logs.follow(tail))
    }

    #[tracing::instrument(skip_all, fields(server_id = %server_id))]
    async fn connect(
        &self,
        server_id: Uuid,
        transport: Transport,
    ) -> Result<McpEndpoint, RuntimeError> {
        let instance = self.instance(server_id).ok_or(RuntimeError::NotFound)?;
        if instance.transport != transport {
            return Err(RuntimeError::Failed(format!(
                "this server speaks MCP over {}, not {}",
                transport_name(instance.transport),
                transport_name(transport)
            )));
        }
        let not_running = || RuntimeError::Failed("the process is not running".into());
        match transport {
            Transport::Http => {
                let run = instance.run();
                let port = run
                    .as_ref()
                    .filter(|run| run.exited().is_none())
                    .and_then(|run| run.port)
                    .ok_or_else(not_running)?;
                Ok(McpEndpoint::Http(format!("http://127.0.0.1:{port}/mcp")))
            }
            Transport::Stdio => {
                // The channel is shared with the run; connecting may wait, so take it
                // out of the lock first.
                let channel = {
                    let run = instance.run();
                    let run = run
                        .as_ref()
                        .filter(|run| run.exited().is_none())
                        .ok_or_else(not_running)?;
                    run.stdio.clone().ok_or_else(not_running)?
                };
                channel
                    .connect(STDIO_CONNECT_WAIT)
                    .await
                    .map(McpEndpoint::Stdio)
            }
        }
    }
}

fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Stdio => "stdio",
        Transport::Http => "http",
    }
}

fn warn_unless_missing(removal: std::io::Result<()>, path: &Path) {
    match removal {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), %error, "cannot remove a removed server's file");
        }
        _ => {}
    }
}
