//! The Docker runtime: each server is one container named `berth-<server id>`, labelled
//! with its server, owner and spec hash, created through the engine's API (bollard).

mod config;
mod errors;
mod inspect;
mod logs;
mod output;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use berth_application::runtime::{
    ContainerRuntime, InstanceState, InstanceStatus, LaunchSpec, McpEndpoint, RuntimeError,
    StdioConnection,
};
use berth_domain::catalog::Transport;
use bollard::errors::Error as EngineError;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, ContainerSummaryStateEnum};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, ListContainersOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::stream::{BoxStream, TryStreamExt};
use tokio::sync::OnceCell;
use uuid::Uuid;

use self::errors::{engine_error, image_unavailable, status};
use self::inspect::{http_endpoint, inspected_state, label};

pub use config::{
    container_name, LABEL_MANAGED, LABEL_NAME, LABEL_OWNER, LABEL_SERVER_ID, LABEL_SPEC_HASH,
    LABEL_TRANSPORT,
};

/// How long [`DockerRuntime::answers`] waits for the engine.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs MCP servers as Docker containers.
///
/// Containers are never restarted by the engine (restart policy `no`): Berth's
/// reconciler notices exits and decides. Every container runs unprivileged, with all
/// capabilities dropped, `no-new-privileges`, a read-only root filesystem and a small
/// writable tmpfs at `/tmp`.
#[derive(Debug)]
pub struct DockerRuntime {
    docker: Docker,
    negotiated: OnceCell<()>,
    // The value of the `berth.managed` label: one installation's containers are never
    // listed (and so never removed as leftovers) by another sharing the engine.
    installation: String,
}

impl DockerRuntime {
    /// A client for the engine at `DOCKER_HOST`, or the local socket when it is unset.
    /// Nothing is sent yet; see [`DockerRuntime::answers`].
    pub fn connect() -> Result<Self, RuntimeError> {
        let docker = Docker::connect_with_defaults()
            .map_err(|error| RuntimeError::Unavailable(error.to_string()))?;
        Ok(Self::with_client(docker))
    }

    /// Wraps an already configured bollard client.
    pub fn with_client(docker: Docker) -> Self {
        Self {
            docker,
            negotiated: OnceCell::new(),
            installation: config::DEFAULT_INSTALLATION.to_owned(),
        }
    }

    /// Labels containers as belonging to `installation` and lists only those, so several
    /// Berth installations (or test databases) can share one engine.
    pub fn for_installation(mut self, installation: impl Into<String>) -> Self {
        self.installation = installation.into();
        self
    }

    /// Whether the engine answers a ping (what `--runtime auto` decides by).
    pub async fn answers(&self) -> bool {
        let ping = async {
            let docker = self.client().await.ok()?;
            docker.ping().await.ok()
        };
        matches!(tokio::time::timeout(PING_TIMEOUT, ping).await, Ok(Some(_)))
    }

    /// The client, after agreeing on an API version the engine speaks: bollard asks for
    /// its newest, which older engines refuse outright.
    async fn client(&self) -> Result<&Docker, RuntimeError> {
        self.negotiated
            .get_or_try_init(|| async {
                // Negotiation updates the version shared by every clone of the client.
                self.docker
                    .clone()
                    .negotiate_version()
                    .await
                    .map(drop)
                    .map_err(|error| engine_error("reaching the Docker engine", error))
            })
            .await?;
        Ok(&self.docker)
    }

    async fn inspect_container(
        &self,
        server_id: Uuid,
    ) -> Result<Option<ContainerInspectResponse>, RuntimeError> {
        let docker = self.client().await?;
        match docker
            .inspect_container(&container_name(server_id), None)
            .await
        {
            Ok(found) => Ok(Some(found)),
            Err(error) if status(&error) == Some(404) => Ok(None),
            Err(error) => Err(engine_error("inspecting the container", error)),
        }
    }

    async fn pull(&self, image: &str) -> Result<(), RuntimeError> {
        let docker = self.client().await?;
        let (from_image, tag) = config::pull_reference(image);
        let options = CreateImageOptions {
            from_image: Some(from_image),
            tag: Some(tag),
            ..Default::default()
        };
        tracing::info!(image, "image not present locally; pulling it");
        docker
            .create_image(Some(options), None, None)
            .try_for_each(|_progress| std::future::ready(Ok(())))
            .await
            .map_err(|error| image_unavailable(image, &error))
    }

    /// A container with this spec: the existing one when its spec hash matches, a new
    /// one otherwise (pulling the image when missing).
    async fn ensure_container(&self, spec: &LaunchSpec) -> Result<String, RuntimeError> {
        let plan = config::plan(spec, &self.installation)?;
        let name = container_name(spec.server_id);
        if let Some(existing) = self.inspect_container(spec.server_id).await? {
            let id = existing.id.clone().unwrap_or_else(|| name.clone());
            if label(&existing, LABEL_SPEC_HASH) == Some(plan.spec_hash.as_str()) {
                return Ok(id);
            }
            tracing::info!(server_id = %spec.server_id, container = %id, "launch spec changed; replacing the container");
            self.remove(spec.server_id).await?;
        }
        let docker = self.client().await?;
        let created = match create_named(docker, &name, plan.body.clone()).await {
            Err(error) if status(&error) == Some(404) => {
                self.pull(&plan.image).await?;
                create_named(docker, &name, plan.body).await
            }
            other => other,
        };
        match created {
            Ok(id) => Ok(id),
            Err(error) if status(&error) == Some(404) => {
                Err(image_unavailable(&plan.image, &error))
            }
            // Another attempt created it between our inspect and create.
            Err(error) if status(&error) == Some(409) => {
                match self.inspect_container(spec.server_id).await? {
                    Some(existing)
                        if label(&existing, LABEL_SPEC_HASH) == Some(plan.spec_hash.as_str()) =>
                    {
                        Ok(existing.id.unwrap_or(name))
                    }
                    _ => Err(engine_error("creating the container", error)),
                }
            }
            Err(error) => Err(engine_error("creating the container", error)),
        }
    }
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    fn kind(&self) -> &'static str {
        "docker"
    }

    #[tracing::instrument(skip_all, fields(server_id = %spec.server_id))]
    async fn create(&self, spec: &LaunchSpec) -> Result<String, RuntimeError> {
        self.ensure_container(spec).await
    }

    #[tracing::instrument(skip_all, fields(server_id = %server_id))]
    async fn start(&self, server_id: Uuid) -> Result<(), RuntimeError> {
        let docker = self.client().await?;
        match docker
            .start_container(&container_name(server_id), None)
            .await
        {
            Ok(()) => Ok(()),
            Err(error) if status(&error) == Some(404) => Err(RuntimeError::NotFound),
            Err(error) => Err(engine_error("starting the container", error)),
        }
    }

    #[tracing::instrument(skip_all, fields(server_id = %server_id))]
    async fn stop(&self, server_id: Uuid, grace: Duration) -> Result<(), RuntimeError> {
        let docker = self.client().await?;
        let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let options = StopContainerOptions {
            t: Some(i32::try_from(seconds).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        // The engine answers only once the container is down, up to `grace` later.
        let patient = docker.clone().with_timeout(docker.timeout() + grace);
        match patient
            .stop_container(&container_name(server_id), Some(options))
            .await
        {
            Ok(()) => Ok(()),
            Err(error) if status(&error) == Some(404) => Ok(()),
            Err(error) => Err(engine_error("stopping the container", error)),
        }
    }

    #[tracing::instrument(skip_all, fields(server_id = %server_id))]
    async fn remove(&self, server_id: Uuid) -> Result<(), RuntimeError> {
        let docker = self.client().await?;
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match docker
            .remove_container(&container_name(server_id), Some(options))
            .await
        {
            Ok(()) => Ok(()),
            Err(error) if status(&error) == Some(404) => Ok(()),
            Err(EngineError::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("in progress") => Ok(()),
            Err(error) => Err(engine_error("removing the container", error)),
        }
    }

    async fn inspect(&self, server_id: Uuid) -> Result<Option<InstanceStatus>, RuntimeError> {
        Ok(self
            .inspect_container(server_id)
            .await?
            .map(|found| InstanceStatus {
                server_id,
                instance_id: found
                    .id
                    .clone()
                    .unwrap_or_else(|| container_name(server_id)),
                state: inspected_state(&found),
            }))
    }

    async fn list(&self) -> Result<Vec<InstanceStatus>, RuntimeError> {
        let docker = self.client().await?;
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("{LABEL_MANAGED}={}", self.installation)],
            )])),
            ..Default::default()
        };
        let summaries = docker
            .list_containers(Some(options))
            .await
            .map_err(|error| engine_error("listing containers", error))?;
        let mut found = Vec::with_capacity(summaries.len());
        for summary in summaries {
            let Some(server_id) = summary
                .labels
                .as_ref()
                .and_then(|labels| labels.get(LABEL_SERVER_ID))
                .and_then(|id| Uuid::parse_str(id).ok())
            else {
                continue;
            };
            let instance_id = summary
                .id
                .clone()
                .unwrap_or_else(|| container_name(server_id));
            let state = match summary.state {
                Some(ContainerSummaryStateEnum::CREATED) => InstanceState::Created,
                Some(
                    ContainerSummaryStateEnum::RUNNING
                    | ContainerSummaryStateEnum::RESTARTING
                    | ContainerSummaryStateEnum::PAUSED
                    | ContainerSummaryStateEnum::STOPPING,
                ) => InstanceState::Running,
                // The summary has no exit code or OOM flag; only stopped ones need a look.
                _ => match self.inspect_container(server_id).await? {
                    Some(inspected) => inspected_state(&inspected),
                    None => continue,
                },
            };
            found.push(InstanceStatus {
                server_id,
                instance_id,
                state,
            });
        }
        Ok(found)
    }

    async fn logs(&self, server_id: Uuid, tail: usize) -> Result<Vec<String>, RuntimeError> {
        self.backlog(server_id, tail).await
    }

    async fn follow_logs(
        &self,
        server_id: Uuid,
        tail: usize,
    ) -> Result<BoxStream<'static, Result<String, RuntimeError>>, RuntimeError> {
        self.follow(server_id, tail).await
    }

    #[tracing::instrument(skip_all, fields(server_id = %server_id))]
    async fn connect(
        &self,
        server_id: Uuid,
        transport: Transport,
    ) -> Result<McpEndpoint, RuntimeError> {
        let found = self
            .inspect_container(server_id)
            .await?
            .ok_or(RuntimeError::NotFound)?;
        if found.state.as_ref().and_then(|state| state.running) != Some(true) {
            return Err(RuntimeError::Failed("the container is not running".into()));
        }
        match transport {
            Transport::Http => http_endpoint(&found).map(McpEndpoint::Http),
            Transport::Stdio => {
                if found.config.as_ref().and_then(|config| config.open_stdin) != Some(true) {
                    return Err(RuntimeError::Failed(
                        "the container was not created with stdin open; it is not a stdio server"
                            .into(),
                    ));
                }
                let docker = self.client().await?;
                let options = AttachContainerOptions {
                    stdin: true,
                    stdout: true,
                    stderr: false,
                    stream: true,
                    logs: false,
                    ..Default::default()
                };
                let attached = docker
                    .attach_container(&container_name(server_id), Some(options))
                    .await
                    .map_err(|error| match status(&error) {
                        Some(404) => RuntimeError::NotFound,
                        _ => engine_error("attaching to the container", error),
                    })?;
                Ok(McpEndpoint::Stdio(StdioConnection {
                    reader: Box::new(output::stdout_reader(attached.output)),
                    writer: Box::new(attached.input),
                }))
            }
        }
    }
}

async fn create_named(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
) -> Result<String, EngineError> {
    let options = CreateContainerOptions {
        name: Some(name.to_owned()),
        ..Default::default()
    };
    docker
        .create_container(Some(options), body)
        .await
        .map(|created| created.id)
}
