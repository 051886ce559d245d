//! The process manager: turns what the event log says servers should be into what the
//! runtime runs, and records each outcome as a command with the causing event as
//! `causation_id`.
//!
//! It is level-triggered: for a server it loads the recorded state, asks the runtime what
//! exists, and takes the one next step (`decide::next_step`), repeating until nothing is
//! left to do. Every runtime action is idempotent and keyed by the server id, so a crash
//! between an action and its recorded outcome is repaired by simply running again: the
//! step is repeated, finds the work done, and records it.

mod decide;
mod launch;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_domain::catalog::RuntimeKind;
use berth_domain::server::{Health, Server, ServerCommand, ServerError, ServerState, Tool};
use cqrs_es::persist::PersistedEventRepository;
use futures_util::stream::{self, StreamExt};
use uuid::Uuid;

pub use decide::{adopts, next_step, Lifetime, Step};
pub use launch::{launch_spec, pinned_definition};

use crate::commands::CommandBus;
use crate::error::AppError;
use crate::metadata::{Actor, CommandMetadata};
use crate::redaction::Redactor;
use crate::runtime::{
    ContainerRuntime, InstanceState, McpSessions, ProbeError, ProbeReport, RuntimeError,
};

/// How the process manager behaves.
#[derive(Debug, Clone)]
pub struct ProcessManagerOptions {
    /// How long a server gets to stop after SIGTERM.
    pub stop_grace: Duration,
    /// How long a started server gets to answer the MCP handshake.
    pub probe_timeout: Duration,
    /// The pause before the first automatic restart; doubled for each further one.
    pub restart_backoff: Duration,
    /// The longest pause between automatic restarts.
    pub restart_backoff_max: Duration,
    /// Servers reconciled at once.
    pub concurrency: usize,
    /// Fault injection for crash tests: stop (as if the process died) right after this
    /// runtime action succeeded and before its outcome is recorded.
    pub crash_after: Option<CrashPoint>,
    /// The name of the Berth node this process manager runs on, recorded on each server
    /// whose container or process it creates or takes over.
    pub node: String,
}

impl Default for ProcessManagerOptions {
    fn default() -> Self {
        Self {
            stop_grace: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(30),
            restart_backoff: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(60),
            concurrency: 8,
            crash_after: None,
            node: DEFAULT_NODE.into(),
        }
    }
}

/// The node name of a Berth that was given none.
pub const DEFAULT_NODE: &str = "local";

/// Where an injected crash happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the container or process was created.
    Create,
    /// After it was started (before the handshake and `running` are recorded).
    Start,
    /// After it was stopped and removed.
    Stop,
}

/// Why reconciling a server stopped short.
#[derive(Debug, thiserror::Error)]
pub enum ProcessManagerError {
    /// Recording an outcome failed.
    #[error(transparent)]
    App(#[from] AppError),
    /// The injected crash of `ProcessManagerOptions::crash_after`.
    #[error("injected crash after {0:?}")]
    InjectedCrash(CrashPoint),
    /// The server kept changing under the process manager.
    #[error("server {0} did not settle")]
    Unsettled(Uuid),
}

/// An event the process manager reacts to, as the feed delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    /// `server`, `catalog_entry`, ...
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The event's id, recorded as `causation_id` of what it causes.
    pub event_id: Uuid,
    /// The correlation id it carried, passed on to what it causes.
    pub correlation_id: Option<Uuid>,
}

/// What `POST /servers/{id}/test` answers.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    /// The handshake result, or why it failed.
    pub result: Result<ProbeReport, String>,
}

/// Drives servers' containers or processes. Share it behind an `Arc`.
pub struct ProcessManager<R: PersistedEventRepository + Clone> {
    bus: Arc<CommandBus<R>>,
    runtime: Arc<dyn ContainerRuntime>,
    sessions: Arc<dyn McpSessions>,
    options: ProcessManagerOptions,
    // One reconciliation at a time per server; different servers proceed in parallel.
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    restarts_scheduled: Mutex<HashSet<Uuid>>,
}

const MAX_STEPS: usize = 16;
const LOG_LINES_IN_ERRORS: usize = 10;
/// How long a server that failed its handshake gets to exit before its output is read.
const EXIT_WAIT: Duration = Duration::from_secs(3);

fn is_stale_outcome(err: &AppError) -> bool {
    // Someone changed the server while the runtime worked (stopped it during start, ...):
    // the outcome no longer applies; reloading and deciding again is the right move.
    matches!(
        err,
        AppError::Server(
            ServerError::InvalidTransition { .. }
                | ServerError::RestartNotAllowed
                | ServerError::Disabled { .. }
                | ServerError::BeingDeleted { .. }
        ) | AppError::Conflict
    )
}

impl<R: PersistedEventRepository + Clone + 'static> ProcessManager<R> {
    /// A process manager recording through `bus` and running servers on `runtime`.
    pub fn new(
        bus: Arc<CommandBus<R>>,
        runtime: Arc<dyn ContainerRuntime>,
        sessions: Arc<dyn McpSessions>,
        options: ProcessManagerOptions,
    ) -> Arc<Self> {
        Arc::new(Self {
            bus,
            runtime,
            sessions,
            options,
            locks: Mutex::new(HashMap::new()),
            restarts_scheduled: Mutex::new(HashSet::new()),
        })
    }

    /// The runtime it drives.
    pub fn runtime(&self) -> &Arc<dyn ContainerRuntime> {
        &self.runtime
    }

    /// Reacts to a batch of events: every server they touch is reconciled (in parallel,
    /// bounded). Returns once all are done, so the caller may then save its checkpoint.
    pub async fn handle_events(
        self: &Arc<Self>,
        events: Vec<EventRef>,
    ) -> Result<(), ProcessManagerError> {
        let mut causes: Vec<(Uuid, EventRef)> = Vec::new();
        for e in events
            .into_iter()
            .filter(|e| e.aggregate_type == <Server as cqrs_es::Aggregate>::TYPE)
        {
            let Ok(id) = e.aggregate_id.parse::<Uuid>() else {
                continue;
            };
            // The last event of each server is its cause; earlier ones are superseded.
            match causes.iter_mut().find(|(s, _)| *s == id) {
                Some(slot) => slot.1 = e,
                None => causes.push((id, e)),
            }
        }
        let results: Vec<_> = stream::iter(causes)
            .map(|(id, e)| {
                let metadata = self.metadata(Some(e.event_id), e.correlation_id);
                let pm = self.clone();
                async move { pm.reconcile(id, &metadata).await }
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        settle(results)
    }

    /// Reconciles every server named, plus every container or process the runtime runs
    /// for Berth (whose server may be gone): used at start and periodically.
    pub async fn reconcile_all(
        self: &Arc<Self>,
        server_ids: Vec<Uuid>,
    ) -> Result<(), ProcessManagerError> {
        let mut ids: HashSet<Uuid> = server_ids.into_iter().collect();
        match self.runtime.list().await {
            Ok(instances) => ids.extend(instances.into_iter().map(|i| i.server_id)),
            Err(e) => tracing::warn!(error = %e, "cannot list the runtime's containers"),
        }
        let results: Vec<_> = stream::iter(ids)
            .map(|id| {
                let metadata = self.metadata(None, None);
                let pm = self.clone();
                async move { pm.reconcile(id, &metadata).await }
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        settle(results)
    }

    fn metadata(
        &self,
        causation_id: Option<Uuid>,
        correlation_id: Option<Uuid>,
    ) -> CommandMetadata {
        let mut md = CommandMetadata::new(Actor::System("process-manager".into()));
        md.causation_id = causation_id;
        md.correlation_id = correlation_id;
        md
    }

    fn lock_for(&self, id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id).or_default().clone()
    }

    /// Brings one server's runtime in line with its record, step by step.
    #[tracing::instrument(skip_all, fields(server_id = %id))]
    pub async fn reconcile(
        self: &Arc<Self>,
        id: Uuid,
        metadata: &CommandMetadata,
    ) -> Result<(), ProcessManagerError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        // The entry's runtime kind, read once: a step never changes which version the
        // server runs (an upgrade applies from its next reconcile).
        let mut known_kind = None;
        for _ in 0..MAX_STEPS {
            let server = self.bus.load_server(id.into()).await?;
            let kind = match known_kind {
                Some(kind) => kind,
                None => *known_kind.insert(self.kind_of(&server).await),
            };
            let inspected = match kind {
                Some(kind) => self.runtime.inspect_as(id, kind).await,
                None => self.runtime.inspect(id).await,
            };
            let instance = match inspected {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot inspect; will retry on the next reconcile");
                    return Ok(());
                }
            };
            let lifetime = self.lifetime(&server, kind);
            let step = match next_step(&server, instance.as_ref(), lifetime) {
                Step::Nothing if adopts(&server, instance.as_ref(), &self.options.node) => {
                    Step::Adopt
                }
                step => step,
            };
            tracing::debug!(?step, state = %server.state, "next step");
            let outcome = match step {
                Step::Nothing => return Ok(()),
                Step::ScheduleRestart { attempt } => {
                    self.schedule_restart(id, attempt, metadata.clone());
                    return Ok(());
                }
                step => self.perform(id, &server, step, metadata).await,
            };
            match outcome {
                Ok(()) => {}
                Err(ProcessManagerError::App(e)) if is_stale_outcome(&e) => {
                    tracing::debug!(error = %e, "outcome no longer applies; deciding again");
                }
                Err(e) => return Err(e),
            }
        }
        Err(ProcessManagerError::Unsettled(id))
    }

    /// The runtime kind of the entry version `server` runs; `None` when that is not
    /// known (the entry was removed, or the server never existed).
    async fn kind_of(&self, server: &Server) -> Option<RuntimeKind> {
        if !server.created || server.deleted {
            return None;
        }
        let catalog_id = server.catalog_id?;
        let entry = self.bus.load_catalog_entry(catalog_id.into()).await.ok()?;
        pinned_definition(server, &entry)
            .ok()
            .map(|definition| definition.runtime.kind())
    }

    /// Whether `server`'s missing instance ended with an earlier Berth: a local process
    /// (or a registered API's in-memory server) this runtime did not make since Berth
    /// started. One it made (and that is now gone)
    /// died, or was removed after a failure not yet recorded, on this Berth's watch.
    fn lifetime(&self, server: &Server, kind: Option<RuntimeKind>) -> Lifetime {
        let made_here = server
            .container_id
            .as_deref()
            .is_some_and(|id| self.runtime.made_by_this_run(id));
        match kind {
            Some(kind) if !kind.outlives_berth() && !made_here => Lifetime::EndsWithBerth,
            _ => Lifetime::OutlivesBerth,
        }
    }

    /// Records an outcome. What carries the server's own words (a failure's output, its
    /// tools) loses the server's secrets first: the event log keeps it forever.
    async fn record(
        &self,
        id: Uuid,
        command: ServerCommand,
        metadata: &CommandMetadata,
    ) -> Result<(), ProcessManagerError> {
        let command = match command {
            ServerCommand::RecordFailed { reason } => ServerCommand::RecordFailed {
                reason: self.redacted(id, &reason).await,
            },
            ServerCommand::RecordExited { exit_code, reason } => ServerCommand::RecordExited {
                exit_code,
                reason: self.redacted(id, &reason).await,
            },
            ServerCommand::RecordRunning { tools, endpoint } => ServerCommand::RecordRunning {
                tools: self.redacted_tools(id, tools).await,
                endpoint,
            },
            ServerCommand::RecordTools { tools } => ServerCommand::RecordTools {
                tools: self.redacted_tools(id, tools).await,
            },
            other => other,
        };
        self.bus.server(id.into(), command, metadata).await?;
        Ok(())
    }

    /// What takes server `id`'s secrets out of text; `None` when they cannot be read
    /// now (the key store is unreachable), and so what the server said cannot be vetted.
    async fn redactor(&self, id: Uuid) -> Option<Redactor> {
        let server = self.bus.load_server(id.into()).await.ok()?;
        self.bus.redactor_of(&server, id).await.ok()
    }

    /// `text` without server `id`'s secrets; only the part before its output when they
    /// cannot be read (fail closed: the event log keeps what it is given forever).
    async fn redacted(&self, id: Uuid, text: &str) -> String {
        match self.redactor(id).await {
            Some(redactor) => redactor.redact(text),
            None => format!(
                "{} (its output is left out: its secrets could not be read to redact it)",
                text.split_once(OUTPUT_MARK).map_or(text, |(what, _)| what)
            ),
        }
    }

    /// `tools` without server `id`'s secrets; only their names when those cannot be read.
    async fn redacted_tools(&self, id: Uuid, tools: Vec<Tool>) -> Vec<Tool> {
        match self.redactor(id).await {
            Some(redactor) => redact_tools(&redactor, tools),
            None => tools
                .into_iter()
                .map(|tool| Tool {
                    name: tool.name,
                    description: None,
                    input_schema: None,
                })
                .collect(),
        }
    }

    fn crash_if(&self, point: CrashPoint) -> Result<(), ProcessManagerError> {
        if self.options.crash_after == Some(point) {
            return Err(ProcessManagerError::InjectedCrash(point));
        }
        Ok(())
    }

    async fn perform(
        &self,
        id: Uuid,
        server: &Server,
        step: Step,
        md: &CommandMetadata,
    ) -> Result<(), ProcessManagerError> {
        match step {
            Step::Nothing | Step::ScheduleRestart { .. } => Ok(()),
            Step::BeginProvisioning => self.record(id, ServerCommand::BeginProvisioning, md).await,
            Step::Relaunch => {
                tracing::info!("its process ended with the Berth that ran it; starting it again");
                self.record(id, ServerCommand::Relaunch, md).await
            }
            Step::Adopt => {
                tracing::info!(from = ?server.node, "its container outlived the node that ran it; this node takes it over");
                let node = self.options.node.clone();
                self.record(id, ServerCommand::RecordAdopted { node }, md)
                    .await
            }
            Step::Create => self.create(id, server, md).await,
            Step::Start => self.start(id, server, md).await,
            Step::Stop => {
                self.sessions.close(id).await;
                let stopped = self.runtime.stop(id, self.options.stop_grace).await;
                let removed = self.runtime.remove(id).await;
                if let Err(e) = stopped.and(removed) {
                    // The outcome is still "stopped" as far as the record goes; a leftover
                    // is removed by a later reconcile.
                    tracing::warn!(error = %e, "stopping or removing failed");
                }
                self.crash_if(CrashPoint::Stop)?;
                self.record(id, ServerCommand::RecordStopped, md).await
            }
            Step::RemoveLeftover => {
                if let Err(e) = self.discard(id).await {
                    tracing::warn!(error = %e, "cannot remove a leftover container");
                }
                Ok(())
            }
            Step::RecordExit {
                exit_code,
                oom_killed,
                present,
            } => {
                let output = self.last_output(id).await;
                let what = if !present {
                    "its container or process is gone".to_string()
                } else if oom_killed {
                    "it was killed for exceeding its memory limit".to_string()
                } else {
                    match exit_code {
                        Some(code) => format!("it exited unexpectedly with code {code}"),
                        None => "it is no longer running".to_string(),
                    }
                };
                if present {
                    let _ = self.discard(id).await;
                }
                let reason = with_output(what, &output);
                self.record(id, ServerCommand::RecordExited { exit_code, reason }, md)
                    .await
            }
        }
    }

    async fn create(
        &self,
        id: Uuid,
        server: &Server,
        md: &CommandMetadata,
    ) -> Result<(), ProcessManagerError> {
        let catalog_id = server.catalog_id.unwrap_or_default();
        let entry = self.bus.load_catalog_entry(catalog_id.into()).await?;
        if !server.secrets.is_empty() {
            if let Err(e) = self.bus.cipher().prepare(&server.owner).await {
                let reason = format!("its secrets cannot be opened: {e}");
                return self
                    .record(id, ServerCommand::RecordFailed { reason }, md)
                    .await;
            }
        }
        let spec = match launch_spec(id, server, &entry, self.bus.cipher()) {
            Ok(spec) => spec,
            Err(reason) => {
                return self
                    .record(id, ServerCommand::RecordFailed { reason }, md)
                    .await;
            }
        };
        match self.runtime.create(&spec).await {
            Ok(container_id) => {
                self.crash_if(CrashPoint::Create)?;
                self.record(
                    id,
                    ServerCommand::RecordContainerCreated {
                        container_id,
                        node: self.options.node.clone(),
                    },
                    md,
                )
                .await
            }
            Err(e) => {
                let _ = self.discard(id).await;
                self.record(
                    id,
                    ServerCommand::RecordFailed {
                        reason: e.to_string(),
                    },
                    md,
                )
                .await
            }
        }
    }

    async fn start(
        &self,
        id: Uuid,
        server: &Server,
        md: &CommandMetadata,
    ) -> Result<(), ProcessManagerError> {
        // Whatever session there was talked to an earlier container or process.
        self.sessions.close(id).await;
        if let Err(e) = self.runtime.start(id).await {
            let output = self.last_output(id).await;
            let _ = self.discard(id).await;
            let reason = with_output(format!("it could not be started: {e}"), &output);
            return self
                .record(id, ServerCommand::RecordFailed { reason }, md)
                .await;
        }
        self.crash_if(CrashPoint::Start)?;
        match self.handshake(id, server).await {
            Ok(report) => {
                self.record(
                    id,
                    ServerCommand::RecordRunning {
                        tools: report.tools,
                        endpoint: report.endpoint,
                    },
                    md,
                )
                .await
            }
            Err(e) => {
                let status = match e {
                    // It hung up: it is usually on its way out.
                    ProbeError::Closed { .. } => self.settled_status(id).await,
                    _ => self.runtime.inspect(id).await.ok().flatten(),
                };
                let output = self.last_output(id).await;
                let what = match status.map(|s| s.state) {
                    Some(InstanceState::Exited {
                        exit_code: Some(code),
                        ..
                    }) => {
                        format!("it exited with code {code} while starting")
                    }
                    Some(InstanceState::Exited { .. }) | None => {
                        "it stopped while starting".to_string()
                    }
                    _ => format!("it did not complete the MCP handshake: {e}"),
                };
                let _ = self.discard(id).await;
                let reason = with_output(what, &output);
                self.record(id, ServerCommand::RecordFailed { reason }, md)
                    .await
            }
        }
    }

    /// Probes the server over its session (an `http` server is retried until it listens).
    async fn handshake(&self, id: Uuid, server: &Server) -> Result<ProbeReport, ProbeError> {
        let catalog_id = server.catalog_id.unwrap_or_default();
        let transport = self
            .bus
            .load_catalog_entry(catalog_id.into())
            .await
            .ok()
            .and_then(|entry| pinned_definition(server, &entry).ok().map(|d| d.transport))
            .unwrap_or(berth_domain::catalog::Transport::Stdio);
        self.sessions
            .probe(id, transport, self.options.probe_timeout)
            .await
    }

    /// The instance's status once it has exited, or as it is after [`EXIT_WAIT`]: the exit
    /// of a server that hung up on the handshake (reported once its last output is in the
    /// log) says more than the hang-up.
    async fn settled_status(&self, id: Uuid) -> Option<crate::runtime::InstanceStatus> {
        let deadline = tokio::time::Instant::now() + EXIT_WAIT;
        loop {
            let status = self.runtime.inspect(id).await.ok().flatten();
            let exited = matches!(
                status.as_ref().map(|s| &s.state),
                Some(InstanceState::Exited { .. }) | None
            );
            if exited || tokio::time::Instant::now() >= deadline {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Removes the server's container or process, ending its session first.
    async fn discard(&self, id: Uuid) -> Result<(), RuntimeError> {
        self.sessions.close(id).await;
        self.runtime.remove(id).await
    }

    async fn last_output(&self, id: Uuid) -> Vec<String> {
        self.runtime
            .logs(id, LOG_LINES_IN_ERRORS)
            .await
            .unwrap_or_default()
    }

    fn schedule_restart(self: &Arc<Self>, id: Uuid, attempt: u32, md: CommandMetadata) {
        {
            let mut scheduled = self
                .restarts_scheduled
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !scheduled.insert(id) {
                return;
            }
        }
        let shift = attempt.saturating_sub(1).min(16);
        let delay = self
            .options
            .restart_backoff
            .saturating_mul(1 << shift)
            .min(self.options.restart_backoff_max);
        tracing::info!(server_id = %id, attempt, ?delay, "restarting after failure");
        let pm = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            pm.restarts_scheduled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            match pm
                .bus
                .server(id.into(), ServerCommand::RestartAfterFailure, &md)
                .await
            {
                Ok(_) => {
                    if let Err(e) = pm.reconcile(id, &md).await {
                        tracing::warn!(server_id = %id, error = %e, "reconcile after restart failed");
                    }
                }
                Err(e) => {
                    tracing::debug!(server_id = %id, error = %e, "automatic restart no longer applies")
                }
            }
        });
    }

    /// Runs the MCP handshake against a running server and records what it found (health
    /// and tools, only when they changed).
    #[tracing::instrument(skip_all, fields(server_id = %id))]
    pub async fn check(
        &self,
        id: Uuid,
        metadata: &CommandMetadata,
    ) -> Result<TestOutcome, AppError> {
        let server = self.bus.load_server(id.into()).await?;
        if !server.created || server.deleted {
            return Err(ServerError::NotFound.into());
        }
        if server.state != ServerState::Running {
            return Err(ServerError::InvalidTransition {
                from: server.state,
                command: "test",
            }
            .into());
        }
        // Fail closed: without the secrets to vet it, what the server said is left out.
        let redactor = self.redactor(id).await;
        let result = self
            .handshake(id, &server)
            .await
            .map(|mut report| {
                match &redactor {
                    Some(redactor) => {
                        report.tools = redact_tools(redactor, std::mem::take(&mut report.tools));
                        redactor.redact_json(&mut report.server_info);
                    }
                    None => {
                        for tool in &mut report.tools {
                            tool.description = None;
                            tool.input_schema = None;
                        }
                        report.server_info = serde_json::Value::Null;
                    }
                }
                report
            })
            .map_err(|e| match &redactor {
                Some(redactor) => redactor.redact(&e.to_string()),
                None => "the handshake failed (its details are left out: the server's \
                         secrets could not be read to redact them)"
                    .to_owned(),
            });
        let health = if result.is_ok() {
            Health::Healthy
        } else {
            Health::Unhealthy
        };
        let recorded = self
            .bus
            .server(id.into(), ServerCommand::RecordHealth { health }, metadata)
            .await;
        if let Err(e) = recorded.as_ref() {
            if !is_stale_outcome(e) {
                recorded?;
            }
        }
        if let Ok(report) = &result {
            let recorded = self
                .bus
                .server(
                    id.into(),
                    ServerCommand::RecordTools {
                        tools: report.tools.clone(),
                    },
                    metadata,
                )
                .await;
            if let Err(e) = recorded.as_ref() {
                if !is_stale_outcome(e) {
                    recorded?;
                }
            }
        }
        Ok(TestOutcome { result })
    }
}

/// One server that cannot be reconciled must not hold up the others: its error is logged
/// and the next event or periodic pass tries again. Only an unreachable database (the
/// batch must be retried) and an injected crash fail the whole batch.
fn settle(results: Vec<Result<(), ProcessManagerError>>) -> Result<(), ProcessManagerError> {
    for result in results {
        match result {
            Ok(()) => {}
            Err(e @ ProcessManagerError::InjectedCrash(_))
            | Err(e @ ProcessManagerError::App(AppError::Unavailable(_))) => return Err(e),
            Err(e) => tracing::warn!(error = %e, "reconciling a server failed"),
        }
    }
    Ok(())
}

/// `tools` with every text of theirs redacted.
fn redact_tools(redactor: &Redactor, tools: Vec<Tool>) -> Vec<Tool> {
    if redactor.is_empty() {
        return tools;
    }
    tools
        .into_iter()
        .map(|tool| Tool {
            name: redactor.redact(&tool.name),
            description: tool.description.map(|d| redactor.redact(&d)),
            input_schema: tool.input_schema.map(|mut schema| {
                redactor.redact_json(&mut schema);
                schema
            }),
        })
        .collect()
}

/// What separates a reason from the server's own output in it.
const OUTPUT_MARK: &str = "; last output:\n";

/// A reason with the last lines the server wrote, which usually say why it failed.
fn with_output(what: String, output: &[String]) -> String {
    if output.is_empty() {
        what
    } else {
        format!("{what}{OUTPUT_MARK}{}", output.join("\n"))
    }
}
