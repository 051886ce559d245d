//! The runtimes of one installation behind one [`ContainerRuntime`]: a server runs on the
//! runtime its catalog entry names (Docker for images, local processes for commands), so
//! Docker and process servers live side by side.
//!
//! A new server goes to the runtime of its entry's kind. Everything else is keyed by the
//! server id alone, so it goes to the runtime that holds the server; stopping and removing
//! go to every runtime, which also clears what an earlier version of the entry, of the
//! other kind, left.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_domain::catalog::{RuntimeKind, Transport};
use futures_util::stream::BoxStream;
use uuid::Uuid;

use crate::runtime::{ContainerRuntime, InstanceStatus, LaunchSpec, McpEndpoint, RuntimeError};

/// Docker, local processes, or both; and the endpoints Berth runs nothing for
/// (registered APIs, remote MCP servers).
pub struct RuntimeSet {
    /// Looked at first for a server (with `endpoints`): it answers from memory, Docker
    /// over its socket.
    process: Option<Arc<dyn ContainerRuntime>>,
    docker: Option<Arc<dyn ContainerRuntime>>,
    endpoints: Option<Arc<dyn ContainerRuntime>>,
}

impl RuntimeSet {
    /// The installation's runtimes; at least one.
    pub fn new(
        docker: Option<Arc<dyn ContainerRuntime>>,
        process: Option<Arc<dyn ContainerRuntime>>,
    ) -> Self {
        debug_assert!(docker.is_some() || process.is_some());
        Self {
            process,
            docker,
            endpoints: None,
        }
    }

    /// An API node's set: it runs no container or process (the active worker does),
    /// only the `endpoints` its document fetches and outside clients come from.
    pub fn endpoints_only(endpoints: Arc<dyn ContainerRuntime>) -> Self {
        Self {
            process: None,
            docker: None,
            endpoints: Some(endpoints),
        }
    }

    /// The set, serving registered APIs and reaching remote MCP servers with `endpoints`
    /// too.
    pub fn with_endpoints(mut self, endpoints: Arc<dyn ContainerRuntime>) -> Self {
        self.endpoints = Some(endpoints);
        self
    }

    /// The kinds of entry this installation runs.
    pub fn kinds(&self) -> Vec<RuntimeKind> {
        let mut kinds = Vec::new();
        if self.docker.is_some() {
            kinds.push(RuntimeKind::Docker);
        }
        if self.process.is_some() {
            kinds.push(RuntimeKind::Process);
        }
        if self.endpoints.is_some() {
            kinds.push(RuntimeKind::OpenApi);
            kinds.push(RuntimeKind::Remote);
        }
        kinds
    }

    fn all(&self) -> impl Iterator<Item = &Arc<dyn ContainerRuntime>> {
        self.process
            .iter()
            .chain(self.endpoints.iter())
            .chain(self.docker.iter())
    }

    fn for_kind(&self, kind: RuntimeKind) -> Result<&Arc<dyn ContainerRuntime>, RuntimeError> {
        let runtime = match kind {
            RuntimeKind::Docker => self.docker.as_ref(),
            RuntimeKind::Process => self.process.as_ref(),
            RuntimeKind::OpenApi | RuntimeKind::Remote => self.endpoints.as_ref(),
        };
        runtime.ok_or_else(|| {
            RuntimeError::Unavailable(format!(
                "this installation has no {kind} runtime (Berth was started without it)"
            ))
        })
    }

    /// The runtime that has a container or process for `server_id`, with its status;
    /// `None` when none has one. When none has one and a runtime could not answer, its
    /// error is reported rather than `None`.
    async fn locate(
        &self,
        server_id: Uuid,
    ) -> Result<Option<(&Arc<dyn ContainerRuntime>, InstanceStatus)>, RuntimeError> {
        let mut unanswered = None;
        for runtime in self.all() {
            match runtime.inspect(server_id).await {
                Ok(Some(status)) => return Ok(Some((runtime, status))),
                Ok(None) => {}
                Err(e) => unanswered = Some(e),
            }
        }
        unanswered.map_or(Ok(None), Err)
    }

    /// The runtime that has a container or process for `server_id`.
    async fn holder(&self, server_id: Uuid) -> Result<&Arc<dyn ContainerRuntime>, RuntimeError> {
        match self.locate(server_id).await? {
            Some((runtime, _)) => Ok(runtime),
            None => Err(RuntimeError::NotFound),
        }
    }

    /// Runs `action` on every runtime; the first error is returned after all ran.
    async fn on_every<'a, F, Fut>(&'a self, action: F) -> Result<(), RuntimeError>
    where
        F: Fn(&'a Arc<dyn ContainerRuntime>) -> Fut,
        Fut: std::future::Future<Output = Result<(), RuntimeError>>,
    {
        let mut first_error = None;
        for runtime in self.all() {
            if let Err(e) = action(runtime).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[async_trait]
impl ContainerRuntime for RuntimeSet {
    fn kind(&self) -> &'static str {
        match (&self.docker, &self.process) {
            (Some(_), Some(_)) => "docker+process",
            (Some(docker), None) => docker.kind(),
            (None, Some(process)) => process.kind(),
            (None, None) => "none",
        }
    }

    fn made_by_this_run(&self, instance_id: &str) -> bool {
        self.all()
            .any(|runtime| runtime.made_by_this_run(instance_id))
    }

    async fn inspect_as(
        &self,
        server_id: Uuid,
        kind: RuntimeKind,
    ) -> Result<Option<InstanceStatus>, RuntimeError> {
        self.for_kind(kind)?.inspect(server_id).await
    }

    async fn create(&self, spec: &LaunchSpec) -> Result<String, RuntimeError> {
        let runtime = self.for_kind(spec.runtime.kind())?;
        // An upgrade may have moved the server to the other kind: what the old version
        // made must not keep running beside the new one.
        // Only an upgrade across kinds leaves something there; a runtime that cannot
        // answer now is no reason to refuse the create, and is logged.
        for other in self.all().filter(|r| !Arc::ptr_eq(r, runtime)) {
            if let Err(e) = other.remove(spec.server_id).await {
                tracing::warn!(server_id = %spec.server_id, runtime = other.kind(), error = %e,
                    "could not remove what another runtime held for this server");
            }
        }
        runtime.create(spec).await
    }

    async fn start(&self, server_id: Uuid) -> Result<(), RuntimeError> {
        self.holder(server_id).await?.start(server_id).await
    }

    async fn stop(&self, server_id: Uuid, grace: Duration) -> Result<(), RuntimeError> {
        self.on_every(|r| r.stop(server_id, grace)).await
    }

    async fn remove(&self, server_id: Uuid) -> Result<(), RuntimeError> {
        self.on_every(|r| r.remove(server_id)).await
    }

    async fn shutdown(&self, grace: Duration) {
        for runtime in self.all() {
            runtime.shutdown(grace).await;
        }
    }

    async fn inspect(&self, server_id: Uuid) -> Result<Option<InstanceStatus>, RuntimeError> {
        Ok(self.locate(server_id).await?.map(|(_, status)| status))
    }

    /// What every runtime that answers lists; an error only when none answers, so one
    /// engine down does not hide the other's instances.
    async fn list(&self) -> Result<Vec<InstanceStatus>, RuntimeError> {
        let mut every = Vec::new();
        let mut answered = false;
        let mut unanswered = None;
        for runtime in self.all() {
            match runtime.list().await {
                Ok(listed) => {
                    answered = true;
                    every.extend(listed);
                }
                Err(e) => {
                    tracing::warn!(runtime = runtime.kind(), error = %e, "cannot list this runtime's instances");
                    unanswered = Some(e);
                }
            }
        }
        match unanswered {
            Some(e) if !answered => Err(e),
            _ => Ok(every),
        }
    }

    async fn logs(&self, server_id: Uuid, tail: usize) -> Result<Vec<String>, RuntimeError> {
        self.holder(server_id).await?.logs(server_id, tail).await
    }

    async fn follow_logs(
        &self,
        server_id: Uuid,
        tail: usize,
    ) -> Result<BoxStream<'static, Result<String, RuntimeError>>, RuntimeError> {
        self.holder(server_id)
            .await?
            .follow_logs(server_id, tail)
            .await
    }

    async fn connect(
        &self,
        server_id: Uuid,
        transport: Transport,
    ) -> Result<McpEndpoint, RuntimeError> {
        self.holder(server_id)
            .await?
            .connect(server_id, transport)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::InstanceState;

    /// A runtime that knows one server, or (`down`) answers nothing at all.
    struct Fake {
        kind: RuntimeKind,
        holds: Option<Uuid>,
        down: bool,
    }

    impl Fake {
        fn answer<T>(&self, value: T) -> Result<T, RuntimeError> {
            if self.down {
                Err(RuntimeError::Unavailable(
                    "the engine does not answer".into(),
                ))
            } else {
                Ok(value)
            }
        }

        fn status(&self, server_id: Uuid) -> Option<InstanceStatus> {
            (self.holds == Some(server_id)).then(|| InstanceStatus {
                server_id,
                instance_id: "i-1".into(),
                state: InstanceState::Running,
            })
        }
    }

    #[async_trait]
    impl ContainerRuntime for Fake {
        fn kind(&self) -> &'static str {
            self.kind.as_str()
        }
        async fn create(&self, _spec: &LaunchSpec) -> Result<String, RuntimeError> {
            self.answer("i-1".into())
        }
        async fn start(&self, _server_id: Uuid) -> Result<(), RuntimeError> {
            self.answer(())
        }
        async fn stop(&self, _server_id: Uuid, _grace: Duration) -> Result<(), RuntimeError> {
            self.answer(())
        }
        async fn remove(&self, _server_id: Uuid) -> Result<(), RuntimeError> {
            self.answer(())
        }
        async fn inspect(&self, server_id: Uuid) -> Result<Option<InstanceStatus>, RuntimeError> {
            self.answer(self.status(server_id))
        }
        async fn list(&self) -> Result<Vec<InstanceStatus>, RuntimeError> {
            self.answer(
                self.holds
                    .and_then(|id| self.status(id))
                    .into_iter()
                    .collect(),
            )
        }
        async fn logs(&self, _server_id: Uuid, _tail: usize) -> Result<Vec<String>, RuntimeError> {
            self.answer(vec![])
        }
        async fn follow_logs(
            &self,
            _server_id: Uuid,
            _tail: usize,
        ) -> Result<BoxStream<'static, Result<String, RuntimeError>>, RuntimeError> {
            Err(RuntimeError::NotFound)
        }
        async fn connect(
            &self,
            _server_id: Uuid,
            _transport: Transport,
        ) -> Result<McpEndpoint, RuntimeError> {
            Err(RuntimeError::NotFound)
        }
    }

    fn set(process_holds: Option<Uuid>, docker_down: bool) -> RuntimeSet {
        let docker = Fake {
            kind: RuntimeKind::Docker,
            holds: None,
            down: docker_down,
        };
        let process = Fake {
            kind: RuntimeKind::Process,
            holds: process_holds,
            down: false,
        };
        RuntimeSet::new(Some(Arc::new(docker)), Some(Arc::new(process)))
    }

    #[tokio::test]
    async fn a_docker_engine_that_does_not_answer_holds_up_only_docker_servers() {
        let running = Uuid::from_u128(1);
        let missing = Uuid::from_u128(2);
        let runtimes = set(Some(running), true);
        // Process servers are answered by their own runtime, whatever Docker does.
        let found = runtimes.inspect_as(running, RuntimeKind::Process).await;
        assert!(matches!(found, Ok(Some(_))), "{found:?}");
        let found = runtimes.inspect_as(missing, RuntimeKind::Process).await;
        assert!(matches!(found, Ok(None)), "{found:?}");
        // A Docker server is not known to be gone: its runtime did not answer.
        let found = runtimes.inspect_as(missing, RuntimeKind::Docker).await;
        assert!(
            matches!(found, Err(RuntimeError::Unavailable(_))),
            "{found:?}"
        );
        // What the runtimes that answer list is still listed.
        let listed = runtimes.list().await.expect("the process runtime answers");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].server_id, running);
    }

    #[tokio::test]
    async fn an_entry_kind_without_its_runtime_is_unavailable_not_gone() {
        let only_processes = RuntimeSet::new(
            None,
            Some(Arc::new(Fake {
                kind: RuntimeKind::Process,
                holds: None,
                down: false,
            })),
        );
        assert_eq!(only_processes.kinds(), vec![RuntimeKind::Process]);
        let found = only_processes
            .inspect_as(Uuid::from_u128(3), RuntimeKind::Docker)
            .await;
        assert!(
            matches!(found, Err(RuntimeError::Unavailable(_))),
            "{found:?}"
        );
    }
}
