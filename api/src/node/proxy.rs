//! The MCP session another node opens with this one for a server this node runs: each
//! request is passed on to this node's own session with the server, whose answer (or
//! error) goes back as it came.

use std::sync::Arc;
use std::time::Duration;

use berth_domain::catalog::Transport;
use berth_infrastructure::mcp::{McpSessionPool, Upstream, UpstreamError};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorData, Extensions, GetPromptRequestParams,
    GetPromptResponse, InitializeRequestParams, InitializeResult, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};
use uuid::Uuid;

use crate::gateway::calls::progress_relay;

/// How long opening the server's session may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a passed-on request may take: the asking node keeps its own, shorter
/// timeout and cancels the request when it passes, which cancels it here too.
const REQUEST_LIMIT: Duration = Duration::from_secs(600);

/// See the module documentation. Made by the SDK for each session.
pub(super) struct NodeProxy {
    sessions: Arc<McpSessionPool>,
}

impl NodeProxy {
    pub(super) fn new(sessions: Arc<McpSessionPool>) -> Self {
        Self { sessions }
    }

    /// This node's session with the server the request's path names.
    async fn upstream(&self, extensions: &Extensions) -> Result<Arc<Upstream>, ErrorData> {
        let (server_id, transport) = target(extensions)?;
        self.sessions
            .session(server_id, transport, OPEN_TIMEOUT)
            .await
            .map_err(|e| {
                ErrorData::internal_error(format!("the server cannot be reached: {e}"), None)
            })
    }
}

/// The server and transport of `/internal/v1/servers/{id}/mcp?transport=...`, as the
/// route checked them.
fn target(extensions: &Extensions) -> Result<(Uuid, Transport), ErrorData> {
    let parts = extensions
        .get::<http::request::Parts>()
        .ok_or_else(|| ErrorData::internal_error("the request is missing", None))?;
    super::routes::mcp_target(&parts.uri)
        .ok_or_else(|| ErrorData::invalid_params("no server is named by this path", None))
}

/// An upstream failure as the JSON-RPC error the asking node passes on.
fn passed_on(error: UpstreamError) -> ErrorData {
    match error {
        UpstreamError::Rpc(data) => data,
        other => ErrorData::internal_error(other.to_string(), None),
    }
}

impl ServerHandler for NodeProxy {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
    }

    /// Answers with what the server itself said when its session opened, so the asking
    /// node sees the server's capabilities and information, not this proxy's.
    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        context.peer.set_peer_info(request.clone());
        let mut answer = self.negotiate_initialize(&request)?;
        let upstream = self.upstream(&context.extensions).await?;
        if let Some(server) = upstream.peer().peer_info() {
            answer.capabilities = server.capabilities.clone();
            if let Some(info) = server.server_info.clone() {
                answer.server_info = info;
            }
            answer.instructions = server.instructions.clone();
        }
        Ok(answer)
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let upstream = self.upstream(&context.extensions).await?;
        upstream
            .within(REQUEST_LIMIT, upstream.peer().list_tools(request))
            .await
            .map_err(passed_on)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let upstream = self.upstream(&context.extensions).await?;
        let progress = progress_relay(&context, str::to_owned);
        upstream
            .call_tool(request, REQUEST_LIMIT, progress, context.ct.cancelled())
            .await
            .map(CallToolResponse::from)
            .map_err(passed_on)
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let upstream = self.upstream(&context.extensions).await?;
        upstream
            .within(REQUEST_LIMIT, upstream.peer().list_resources(request))
            .await
            .map_err(passed_on)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let upstream = self.upstream(&context.extensions).await?;
        upstream
            .within(
                REQUEST_LIMIT,
                upstream.peer().list_resource_templates(request),
            )
            .await
            .map_err(passed_on)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let upstream = self.upstream(&context.extensions).await?;
        upstream
            .within(REQUEST_LIMIT, upstream.peer().read_resource(request))
            .await
            .map(ReadResourceResponse::from)
            .map_err(passed_on)
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let upstream = self.upstream(&context.extensions).await?;
        upstream
            .within(REQUEST_LIMIT, upstream.peer().list_prompts(request))
            .await
            .map_err(passed_on)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let upstream = self.upstream(&context.extensions).await?;
        upstream
            .within(REQUEST_LIMIT, upstream.peer().get_prompt(request))
            .await
            .map(GetPromptResponse::from)
            .map_err(passed_on)
    }
}
