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

/// Docker, local processes, or both.
pub struct RuntimeSet {
    /// Looked at first for a server: it answers from memory, Docker over its socket.
    process: Option<Arc<dyn ContainerRuntime>>,
    docker: Option<Arc<dyn ContainerRuntime>>,
}

impl RuntimeSet {
    /// The installation's runtimes; at least one.
    pub fn new(
        docker: Option<Arc<dyn ContainerRuntime>>,
        process: Option<Arc<dyn ContainerRuntime>>,
    ) -> Self {
        debug_assert!(docker.is_some() || process.is_some());
        Self { process, docker }
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
        kinds
    }

    fn all(&self) -> impl Iterator<Item = &Arc<dyn ContainerRuntime>> {
        self.process.iter().chain(self.docker.iter())
    }

    fn for_kind(&self, kind: RuntimeKind) -> Result<&Arc<dyn ContainerRuntime>, RuntimeError> {
        let runtime = match kind {
            RuntimeKind::Docker => self.docker.as_ref(),
            RuntimeKind::Process => self.process.as_ref(),
        };
        runtime.ok_or_else(|| {
            RuntimeError::Unavailable(format!(
                "this installation has no {kind} runtime (Berth was started without it)"
            ))
        })
    }

    /// The runtime that has a container or process for `server_id`. When none has one,
    /// a runtime that could not answer is reported rather than `NotFound`.
    async fn holder(&self, server_id: Uuid) -> Result<&Arc<dyn ContainerRuntime>, RuntimeError> {
        let mut unanswered = None;
        for runtime in self.all() {
            match runtime.inspect(server_id).await {
                Ok(Some(_)) => return Ok(runtime),
                Ok(None) => {}
                Err(e) => unanswered = Some(e),
            }
        }
        Err(unanswered.unwrap_or(RuntimeError::NotFound))
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

    fn runs(&self, kind: RuntimeKind) -> bool {
        self.for_kind(kind).is_ok()
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
        let mut unanswered = None;
        for runtime in self.all() {
            match runtime.inspect(server_id).await {
                Ok(Some(status)) => return Ok(Some(status)),
                Ok(None) => {}
                Err(e) => unanswered = Some(e),
            }
        }
        unanswered.map_or(Ok(None), Err)
    }

    async fn list(&self) -> Result<Vec<InstanceStatus>, RuntimeError> {
        let mut every = Vec::new();
        for runtime in self.all() {
            every.extend(runtime.list().await?);
        }
        Ok(every)
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
