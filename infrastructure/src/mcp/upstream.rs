//! One session with one upstream server, over its stdio or its Streamable HTTP endpoint.

use std::time::Duration;

use berth_application::runtime::{McpEndpoint, ProbeError, ProbeReport, RemoteEndpoint};
use berth_domain::server::Tool;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotificationParam,
    ClientRequest, ErrorData, PaginatedRequestParams, ProgressNotificationParam, RequestId,
    ServerResult,
};
use rmcp::service::PeerRequestOptions;
use rmcp::service::{ClientInitializeError, RunningService};
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{Peer, RoleClient, ServiceError, ServiceExt};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::client::{ProgressRoutes, UpstreamClient};
use super::{tools, MAX_MESSAGE_BYTES, MAX_TOOL_PAGES};
use crate::runtime::endpoint::address::Refused;

const INITIALIZE: &str = "initialize";
const TOOLS_LIST: &str = "tools/list";

/// The HTTP clients sessions are opened with.
#[derive(Debug, Clone, Default)]
pub struct HttpClients {
    /// For the servers Berth runs, published on its own host.
    pub local: reqwest::Client,
    /// For the servers someone else runs: reaches only the addresses the administrator
    /// allows.
    pub outside: reqwest::Client,
}

/// An open MCP session with a server.
pub struct Upstream {
    service: RunningService<RoleClient, UpstreamClient>,
    endpoint: Option<String>,
}

/// Why a request to an upstream server failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No answer in time.
    #[error("the server did not answer within {0:?}")]
    Timeout(Duration),
    /// The session ended (the server exited or closed the connection).
    #[error("the connection to the server is closed")]
    Closed,
    /// The server answered with a JSON-RPC error.
    #[error("the server answered with an error: {}", .0.message)]
    Rpc(ErrorData),
    /// The server answered with something that is not the expected answer.
    #[error("the server answered wrongly: {0}")]
    Protocol(String),
    /// The caller gave up; the server was told.
    #[error("the call was cancelled")]
    Cancelled,
}

impl UpstreamError {
    fn of(error: ServiceError, timeout: Duration) -> Self {
        match error {
            ServiceError::McpError(data) => Self::Rpc(data),
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => Self::Closed,
            ServiceError::Timeout { .. } => Self::Timeout(timeout),
            ServiceError::Cancelled { .. } => Self::Cancelled,
            other => Self::Protocol(other.to_string()),
        }
    }

    /// The same failure as a handshake step's.
    pub fn in_step(self, step: &'static str) -> ProbeError {
        match self {
            Self::Timeout(timeout) => ProbeError::Timeout { step, timeout },
            Self::Closed => ProbeError::Closed { step },
            Self::Rpc(data) => ProbeError::Protocol {
                step,
                detail: format!("error {}: {}", data.code.0, data.message),
            },
            Self::Protocol(detail) => ProbeError::Protocol { step, detail },
            Self::Cancelled => ProbeError::Closed { step },
        }
    }
}

impl Upstream {
    /// Opens a session: the `initialize` handshake, within `timeout`; an HTTP server is
    /// reached with one of `http`.
    pub async fn open(
        endpoint: McpEndpoint,
        timeout: Duration,
        http: &HttpClients,
    ) -> Result<Self, ProbeError> {
        let client = UpstreamClient::default();
        let (opening, url) = match endpoint {
            McpEndpoint::Stdio(connection) => {
                let transport = AsyncRwTransport::new(connection.reader, connection.writer)
                    .with_max_line_length(MAX_MESSAGE_BYTES);
                (
                    tokio::time::timeout(timeout, client.serve(transport)).await,
                    None,
                )
            }
            McpEndpoint::Http(url) => {
                let config = StreamableHttpClientTransportConfig::with_uri(url.clone());
                let transport =
                    StreamableHttpClientTransport::with_client(http.local.clone(), config);
                (
                    tokio::time::timeout(timeout, client.serve(transport)).await,
                    Some(url),
                )
            }
            // Not published: its URL is the entry's, and may carry its credential.
            McpEndpoint::Remote(remote) => {
                let transport = with_headers(remote, &http.outside)?;
                (
                    tokio::time::timeout(timeout, client.serve(transport)).await,
                    None,
                )
            }
            // Another node of this installation, on the network Berth's nodes share.
            McpEndpoint::Node(node) => {
                let transport = with_headers(node, &http.local)?;
                (
                    tokio::time::timeout(timeout, client.serve(transport)).await,
                    None,
                )
            }
        };
        let service = opening
            .map_err(|_| ProbeError::Timeout {
                step: INITIALIZE,
                timeout,
            })?
            .map_err(initialize_failed)?;
        Ok(Self {
            service,
            endpoint: url,
        })
    }

    /// The server's tools (every page, within `timeout`) and what it said of itself.
    pub async fn report(&self, timeout: Duration) -> Result<ProbeReport, ProbeError> {
        let started = Instant::now();
        let tools = self.tools(timeout).await?;
        let info = self.service.peer().peer_info();
        let (protocol_version, server_info) = match info.as_deref() {
            Some(info) => (
                info.protocol_version.to_string(),
                info.server_info
                    .as_ref()
                    .and_then(|i| serde_json::to_value(i).ok())
                    .unwrap_or(Value::Null),
            ),
            None => (String::new(), Value::Null),
        };
        Ok(ProbeReport {
            protocol_version,
            server_info,
            tools,
            endpoint: self.endpoint.clone(),
            latency: started.elapsed(),
        })
    }

    /// Every page of `tools/list`, within `timeout`; none when the server does not offer
    /// tools (it need not implement `tools/list` at all then).
    pub async fn tools(&self, timeout: Duration) -> Result<Vec<Tool>, ProbeError> {
        let offers_tools = self
            .service
            .peer()
            .peer_info()
            .is_some_and(|info| info.capabilities.tools.is_some());
        if !offers_tools {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + timeout;
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_TOOL_PAGES {
            let params = cursor
                .clone()
                .map(|c| PaginatedRequestParams::default().with_cursor(Some(c)));
            let page = tokio::time::timeout_at(deadline, self.peer().list_tools(params))
                .await
                .map_err(|_| ProbeError::Timeout {
                    step: TOOLS_LIST,
                    timeout,
                })?
                .map_err(|e| UpstreamError::of(e, timeout).in_step(TOOLS_LIST))?;
            tools.extend(page.tools.iter().map(tools::recorded));
            match page.next_cursor.filter(|c| !c.is_empty()) {
                None => return Ok(tools),
                Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                    return Err(ProbeError::Protocol {
                        step: TOOLS_LIST,
                        detail: "the cursor repeats itself".into(),
                    });
                }
                Some(next) => cursor = Some(next),
            }
        }
        Err(ProbeError::Protocol {
            step: TOOLS_LIST,
            detail: format!("more than {MAX_TOOL_PAGES} pages of tools; giving up"),
        })
    }

    /// Where requests go.
    pub fn peer(&self) -> &Peer<RoleClient> {
        self.service.peer()
    }

    /// Where this session's progress notifications go.
    pub fn progress(&self) -> &ProgressRoutes {
        self.service.service().progress()
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.service.is_closed() || self.service.peer().is_transport_closed()
    }

    /// Ends the session (closing the server's stdin, or its HTTP session).
    pub fn close(&self) {
        self.service.cancellation_token().cancel();
    }

    /// Calls a tool within `timeout`, handing the server's progress notifications about
    /// it to `progress` (when given) and telling the server the call is cancelled when
    /// the time is up or `cancelled` completes first.
    pub async fn call_tool(
        &self,
        params: CallToolRequestParams,
        timeout: Duration,
        progress: Option<mpsc::Sender<ProgressNotificationParam>>,
        cancelled: impl std::future::Future<Output = ()>,
    ) -> Result<CallToolResult, UpstreamError> {
        let peer = self.peer();
        let handle = peer
            .send_request_with_option(
                ClientRequest::CallToolRequest(CallToolRequest::new(params)),
                PeerRequestOptions::no_options(),
            )
            .await
            .map_err(|e| UpstreamError::of(e, timeout))?;
        // The SDK gives each request a progress token of its own, unique on this
        // connection, so several callers' notifications never mix.
        let _route = progress.map(|to| self.progress().route(handle.progress_token.clone(), to));
        let id = handle.id.clone();
        let answer = tokio::select! {
            answer = tokio::time::timeout(timeout, handle.await_response()) => match answer {
                Ok(answer) => answer.map_err(|e| UpstreamError::of(e, timeout)),
                Err(_) => {
                    cancel(peer, id, "the gateway's timeout passed").await;
                    return Err(UpstreamError::Timeout(timeout));
                }
            },
            () = cancelled => {
                cancel(peer, id, "the client cancelled the call").await;
                return Err(UpstreamError::Cancelled);
            }
        }?;
        match answer {
            ServerResult::CallToolResult(result) => Ok(result),
            other => Err(UpstreamError::Protocol(format!(
                "the answer to tools/call is not a tool result: {}",
                serde_json::to_string(&other)
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))),
        }
    }

    /// Runs `request` against the session within `timeout`.
    pub async fn within<T>(
        &self,
        timeout: Duration,
        request: impl std::future::Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, UpstreamError> {
        match tokio::time::timeout(timeout, request).await {
            Ok(answer) => answer.map_err(|e| UpstreamError::of(e, timeout)),
            Err(_) => Err(UpstreamError::Timeout(timeout)),
        }
    }
}

/// The Streamable HTTP transport to `endpoint` through `client`, every request carrying
/// the endpoint's (secret) headers.
fn with_headers(
    endpoint: RemoteEndpoint,
    client: &reqwest::Client,
) -> Result<StreamableHttpClientTransport<reqwest::Client>, ProbeError> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(endpoint.url);
    for (name, value) in endpoint.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .ok()
            .zip(HeaderValue::from_str(value.expose_secret()).ok());
        let Some((name, mut value)) = header else {
            return Err(ProbeError::Protocol {
                step: INITIALIZE,
                detail: format!("the credential cannot be sent as header `{name}`"),
            });
        };
        value.set_sensitive(true);
        config.custom_headers.insert(name, value);
    }
    Ok(StreamableHttpClientTransport::with_client(
        client.clone(),
        config,
    ))
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.close();
    }
}

/// Tells the server that request `id` is cancelled; a connection already gone needs no
/// telling.
async fn cancel(peer: &Peer<RoleClient>, id: RequestId, reason: &str) {
    let notice = CancelledNotificationParam::new(Some(id), Some(reason.to_owned()));
    if let Err(e) = peer.notify_cancelled(notice).await {
        tracing::debug!(error = %e, "could not tell the server a call was cancelled");
    }
}

fn initialize_failed(error: ClientInitializeError) -> ProbeError {
    match error {
        ClientInitializeError::TransportError { error, .. } => {
            match error
                .error
                .downcast_ref::<StreamableHttpError<reqwest::Error>>()
            {
                // The server answered, and said no: what it said is the reason (an HTTP
                // server that does not listen yet, or went away, is closed, as a stdio one).
                Some(
                    answered @ (StreamableHttpError::AuthRequired(_)
                    | StreamableHttpError::InsufficientScope(_)
                    | StreamableHttpError::HttpStatus(_)
                    | StreamableHttpError::UnexpectedServerResponse(_)
                    | StreamableHttpError::UnexpectedContentType(_)),
                ) => ProbeError::Protocol {
                    step: INITIALIZE,
                    detail: http_refusal(answered),
                },
                // An address the administrator has not allowed: retrying cannot help.
                Some(StreamableHttpError::Client(e)) => match refused_address(e) {
                    Some(refused) => ProbeError::Protocol {
                        step: INITIALIZE,
                        detail: refused.to_string(),
                    },
                    None => ProbeError::Closed { step: INITIALIZE },
                },
                _ => ProbeError::Closed { step: INITIALIZE },
            }
        }
        ClientInitializeError::ConnectionClosed(_) => ProbeError::Closed { step: INITIALIZE },
        ClientInitializeError::JsonRpcError(data) => ProbeError::Protocol {
            step: INITIALIZE,
            detail: format!("error {}: {}", data.code.0, data.message),
        },
        other => ProbeError::Protocol {
            step: INITIALIZE,
            detail: other.to_string(),
        },
    }
}

/// The address rule's refusal among `error`'s causes, if that is why it failed.
fn refused_address(error: &reqwest::Error) -> Option<&Refused> {
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused);
        }
        cause = e.source();
    }
    None
}

/// What an HTTP server's refusal says, in words a person can act on.
fn http_refusal(error: &StreamableHttpError<reqwest::Error>) -> String {
    match error {
        StreamableHttpError::AuthRequired(_) => {
            "the server answered 401 Unauthorized: its credential is missing or wrong".into()
        }
        StreamableHttpError::InsufficientScope(_) => {
            "the server answered 403 Forbidden: the credential may not do this".into()
        }
        other => {
            // Its words, briefly: the reason is kept in the log for good.
            let said = other.to_string();
            let brief: String = said.chars().take(300).collect();
            if brief.len() < said.len() {
                format!("the server answered: {brief}…")
            } else {
                format!("the server answered: {brief}")
            }
        }
    }
}
