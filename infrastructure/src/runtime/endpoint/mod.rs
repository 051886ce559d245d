//! The entries Berth runs nothing for, reached at addresses outside it: registered HTTP
//! APIs and remote MCP servers. Every connection goes through one client that reaches
//! only the addresses the administrator allows ([`address`]), with the server's
//! credential ([`credential`]).
//!
//! A registered API's operations are the tools of its servers, and a tool call is an
//! HTTP request to the API. `start` asks the API's health path and the server is
//! `running` when it answers (below 500); `connect` hands Berth's MCP client one end of an
//! in-process pipe whose other end an [`ApiServer`] serves.
//!
//! A remote MCP server is reached at its URL: `start` has nothing to do, and `connect`
//! names the URL and credential ([`McpEndpoint::Remote`]); the process manager's
//! handshake decides whether it is `running`. So everything that talks MCP to servers
//! (health checks, the gateway) needs nothing of its own for either.

pub mod address;
pub mod call;
pub mod credential;
pub mod log;
pub mod server;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use berth_application::runtime::{
    ContainerRuntime, InstanceState, InstanceStatus, LaunchSpec, McpEndpoint, RemoteEndpoint,
    RuntimeError, StdioConnection,
};
use berth_domain::catalog::openapi::operations;
use berth_domain::catalog::{RuntimeSpec, Transport};
use futures_util::stream::BoxStream;
use rmcp::ServiceExt;
use uuid::Uuid;

use crate::tls::OutboundTls;
use address::{AddressPolicy, GuardedResolver};
use credential::Credential;
use log::ApiLog;
use secrecy::SecretString;
use server::{ApiServer, ApiTarget};

/// How registered APIs are called.
#[derive(Debug, Clone)]
pub struct EndpointSettings {
    /// The addresses beyond the public internet they may be reached at.
    pub addresses: AddressPolicy,
    /// How long one API request may take (a tool call's own timeout, set per entry,
    /// also applies).
    pub request_timeout: Duration,
    /// How long the health request at start may take.
    pub health_timeout: Duration,
    /// The largest answer read; a larger one is a tool error.
    pub max_answer_bytes: usize,
    /// Whom HTTPS connections trust.
    pub tls: OutboundTls,
}

impl Default for EndpointSettings {
    fn default() -> Self {
        Self {
            addresses: AddressPolicy::default(),
            request_timeout: Duration::from_secs(30),
            health_timeout: Duration::from_secs(10),
            max_answer_bytes: 1024 * 1024,
            tls: OutboundTls::system(),
        }
    }
}

/// One server.
struct Instance {
    id: String,
    reached: Reached,
    state: Mutex<InstanceState>,
    log: ApiLog,
}

/// What a server is.
enum Reached {
    /// A registered API, served in process.
    Api {
        server: ApiServer,
        health_url: String,
    },
    /// A remote MCP server: its URL and the headers its requests carry.
    Remote {
        url: String,
        headers: Vec<(String, SecretString)>,
    },
}

impl Instance {
    fn status(&self, server_id: Uuid) -> InstanceStatus {
        InstanceStatus {
            server_id,
            instance_id: self.id.clone(),
            state: self.state.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    fn set(&self, state: InstanceState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }
}

/// The way out to addresses outside Berth: a client whose resolver refuses what the
/// policy does, and the policy itself for URLs that name an address (which no resolver
/// sees). Every request to an outside address is checked by [`Outside::check`] first.
#[derive(Debug, Clone)]
pub struct Outside {
    /// The client (no proxy, no `Referer`, redirects only to the same origin).
    pub client: reqwest::Client,
    /// The addresses beyond the public internet it may reach.
    pub addresses: AddressPolicy,
}

impl Outside {
    /// Whether `url` may be asked for: a host that is an address literal is checked
    /// here; names are checked by the resolver, at each connection.
    pub fn check(&self, url: &str) -> Result<(), String> {
        check_literal(&self.addresses, url)
    }
}

fn check_literal(addresses: &AddressPolicy, url: &str) -> Result<(), String> {
    let host = reqwest::Url::parse(url)
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned());
    match host.and_then(|h| h.parse::<IpAddr>().ok()) {
        Some(address) => addresses.check(address).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// The runtime of registered APIs and remote MCP servers.
pub struct EndpointRuntime {
    client: reqwest::Client,
    settings: EndpointSettings,
    instances: Mutex<HashMap<Uuid, Arc<Instance>>>,
}

impl EndpointRuntime {
    /// A runtime reaching APIs and servers as `settings` say.
    pub fn new(settings: EndpointSettings) -> Result<Self, RuntimeError> {
        let policy = Arc::new(settings.addresses.clone());
        let client = settings
            .tls
            .client_builder()
            .dns_resolver(GuardedResolver::new(policy))
            // A proxy would connect for us, to addresses the resolver never sees.
            .no_proxy()
            .build()
            .map_err(|e| RuntimeError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            settings,
            instances: Mutex::new(HashMap::new()),
        })
    }

    /// The way out every connection to an outside address takes (the gateway's sessions
    /// to remote servers and fetched documents too).
    pub fn outside(&self) -> Outside {
        Outside {
            client: self.client.clone(),
            addresses: self.settings.addresses.clone(),
        }
    }

    fn instance(&self, server_id: Uuid) -> Option<Arc<Instance>> {
        self.instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&server_id)
            .cloned()
    }

    fn check_literal(&self, url: &str) -> Result<(), RuntimeError> {
        check_literal(&self.settings.addresses, url).map_err(RuntimeError::Failed)
    }
}

#[async_trait]
impl ContainerRuntime for EndpointRuntime {
    fn kind(&self) -> &'static str {
        "openapi"
    }

    fn made_by_this_run(&self, instance_id: &str) -> bool {
        // Instances live in memory: any this runtime knows, it made since Berth started.
        self.instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|i| i.id == instance_id)
    }

    async fn create(&self, spec: &LaunchSpec) -> Result<String, RuntimeError> {
        if let Some(existing) = self.instance(spec.server_id) {
            return Ok(existing.id.clone());
        }
        let log = ApiLog::default();
        let reached = match &spec.runtime {
            RuntimeSpec::OpenApi {
                document,
                base_url,
                auth,
                health_path,
                operations: chosen,
            } => {
                let tools = operations(document, chosen).map_err(|errors| {
                    let said: Vec<String> = errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.message))
                        .collect();
                    RuntimeError::Failed(format!(
                        "the document offers no tools: {}",
                        said.join("; ")
                    ))
                })?;
                self.check_literal(base_url)?;
                let target = ApiTarget {
                    client: self.client.clone(),
                    base_url: base_url.clone(),
                    auth: auth.clone(),
                    config: spec.env.clone(),
                    max_answer_bytes: self.settings.max_answer_bytes,
                    timeout: self.settings.request_timeout,
                };
                Reached::Api {
                    server: ApiServer::new(Arc::new(tools), Arc::new(target), log.clone()),
                    health_url: format!("{}{health_path}", base_url.trim_end_matches('/')),
                }
            }
            RuntimeSpec::Remote { url, auth } => {
                self.check_literal(url)?;
                let credential = Credential::of(auth, &spec.env)
                    .map_err(|e| RuntimeError::Failed(e.to_string()))?;
                // A query credential would be part of URLs the MCP client logs; the
                // entry's rules refuse one, and so does this.
                if credential.query.is_some() {
                    return Err(RuntimeError::Failed(
                        "a remote server's credential goes in a header".into(),
                    ));
                }
                let mut headers = Vec::new();
                if let Some((name, value)) = &credential.header {
                    let value = value.to_str().map_err(|_| {
                        RuntimeError::Failed(format!(
                            "the credential cannot be sent as header `{name}` (it is not \
                             visible ASCII)"
                        ))
                    })?;
                    headers.push((
                        name.as_str().to_owned(),
                        SecretString::from(value.to_owned()),
                    ));
                }
                Reached::Remote {
                    url: url.clone(),
                    headers,
                }
            }
            _ => {
                return Err(RuntimeError::Failed(
                    "this runtime runs only registered APIs and remote servers".into(),
                ))
            }
        };
        let instance = Arc::new(Instance {
            id: format!("{}-{}", spec.runtime.kind(), spec.server_id),
            reached,
            state: Mutex::new(InstanceState::Created),
            log,
        });
        let id = instance.id.clone();
        self.instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spec.server_id, instance);
        Ok(id)
    }

    async fn start(&self, server_id: Uuid) -> Result<(), RuntimeError> {
        let instance = self.instance(server_id).ok_or(RuntimeError::NotFound)?;
        let health_url = match &instance.reached {
            Reached::Api { health_url, .. } => health_url,
            Reached::Remote { url, .. } => {
                // Its MCP handshake, which the process manager makes next, is its check.
                instance.log.write(format!("reaching {url}"));
                instance.set(InstanceState::Running);
                return Ok(());
            }
        };
        let answered = self
            .client
            .get(health_url)
            .timeout(self.settings.health_timeout)
            .send()
            .await;
        let failed = |why: String| {
            instance.log.write(format!("health check failed: {why}"));
            instance.set(InstanceState::Exited {
                exit_code: None,
                oom_killed: false,
            });
            Err(RuntimeError::Failed(format!(
                "the API did not answer its health check ({health_url}): {why}"
            )))
        };
        match answered {
            Ok(response) if response.status().is_server_error() => {
                failed(format!("it answered {}", response.status()))
            }
            Ok(response) => {
                instance.log.write(format!(
                    "health check answered {}: running",
                    response.status().as_u16()
                ));
                instance.set(InstanceState::Running);
                Ok(())
            }
            Err(e) if e.is_timeout() => failed(format!(
                "no answer within {:?}",
                self.settings.health_timeout
            )),
            Err(e) => failed(crate::error::causes(&e.without_url())),
        }
    }

    async fn stop(&self, server_id: Uuid, _grace: Duration) -> Result<(), RuntimeError> {
        if let Some(instance) = self.instance(server_id) {
            instance.set(InstanceState::Exited {
                exit_code: Some(0),
                oom_killed: false,
            });
        }
        Ok(())
    }

    async fn remove(&self, server_id: Uuid) -> Result<(), RuntimeError> {
        self.instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&server_id);
        Ok(())
    }

    async fn inspect(&self, server_id: Uuid) -> Result<Option<InstanceStatus>, RuntimeError> {
        Ok(self.instance(server_id).map(|i| i.status(server_id)))
    }

    async fn list(&self) -> Result<Vec<InstanceStatus>, RuntimeError> {
        Ok(self
            .instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, i)| i.status(*id))
            .collect())
    }

    async fn logs(&self, server_id: Uuid, tail: usize) -> Result<Vec<String>, RuntimeError> {
        let instance = self.instance(server_id).ok_or(RuntimeError::NotFound)?;
        Ok(instance.log.tail(tail))
    }

    async fn follow_logs(
        &self,
        server_id: Uuid,
        tail: usize,
    ) -> Result<BoxStream<'static, Result<String, RuntimeError>>, RuntimeError> {
        let instance = self.instance(server_id).ok_or(RuntimeError::NotFound)?;
        Ok(instance.log.follow(tail))
    }

    async fn connect(
        &self,
        server_id: Uuid,
        transport: Transport,
    ) -> Result<McpEndpoint, RuntimeError> {
        let instance = self.instance(server_id).ok_or(RuntimeError::NotFound)?;
        if instance.status(server_id).state != InstanceState::Running {
            return Err(RuntimeError::Failed("the server is not running".into()));
        }
        let server = match (&instance.reached, transport) {
            (Reached::Api { server, .. }, Transport::Stdio) => server.clone(),
            (Reached::Remote { url, headers }, Transport::Http) => {
                return Ok(McpEndpoint::Remote(RemoteEndpoint {
                    url: url.clone(),
                    headers: headers.clone(),
                }))
            }
            (Reached::Api { .. }, _) => {
                return Err(RuntimeError::Failed(
                    "a registered API is reached over Berth's in-process pipe (stdio)".into(),
                ))
            }
            (Reached::Remote { .. }, _) => {
                return Err(RuntimeError::Failed(
                    "a remote server is reached over Streamable HTTP (http)".into(),
                ))
            }
        };
        let (berth_end, server_end) = tokio::io::duplex(64 * 1024);
        let (read, write) = tokio::io::split(server_end);
        tokio::spawn(async move {
            match server.serve((read, write)).await {
                Ok(running) => {
                    let _ = running.waiting().await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "a registered API's session ended before it began")
                }
            }
        });
        let (reader, writer) = tokio::io::split(berth_end);
        Ok(McpEndpoint::Stdio(StdioConnection {
            reader: Box::new(reader),
            writer: Box::new(writer),
        }))
    }
}

#[cfg(test)]
mod tests;
