//! One gateway session: what the SDK calls for each MCP method a client sends.

use std::sync::{Arc, OnceLock};

use berth_application::gateway::{Everything, Listing, View};
use berth_infrastructure::mcp::UpstreamError;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorData, Implementation,
    ListToolsResult, NumberOrString, PaginatedRequestParams, ProgressToken, RequestParamsMeta,
    ResultType, ServerCapabilities, ServerConfig, Tool as McpTool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{RoleServer, ServerHandler};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::caller::GatewayCaller;
use super::record::{self, Called};
use super::Shared;

/// How many tools one `tools/list` page holds.
pub const TOOLS_PAGE: usize = 100;

/// See the module documentation. Made by the SDK for each session (and for each request
/// of the stateless protocol revision).
pub(crate) struct GatewaySession {
    shared: Arc<Shared>,
    /// The caller the session was opened by; every later request must be theirs.
    bound: OnceLock<GatewayCaller>,
    /// Cancelled when the session ends, which stops its list-change watcher.
    ended: CancellationToken,
}

impl GatewaySession {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            bound: OnceLock::new(),
            ended: CancellationToken::new(),
        }
    }

    /// The caller of this request, who must be the session's.
    fn caller(&self, extensions: &rmcp::model::Extensions) -> Result<GatewayCaller, ErrorData> {
        let caller = GatewayCaller::of(extensions)?;
        let bound = self.bound.get_or_init(|| caller.clone());
        if !bound.same_as(&caller) {
            return Err(ErrorData::invalid_request(
                "this session was opened with another credential; open your own",
                None,
            ));
        }
        Ok(caller)
    }

    fn view(&self, owner: &str) -> View {
        self.shared.directory.view(owner, &Everything)
    }

    /// Sends the call to the server and waits for its answer, its timeout, or the
    /// client's cancellation; the server's progress notifications go back to the client
    /// meanwhile.
    async fn forward(
        &self,
        listing: &Listing,
        tool: &str,
        request: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, Failure> {
        let upstream = self
            .shared
            .sessions
            .session(listing.server_id, listing.transport, listing.call_timeout)
            .await
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = request.arguments;
        // The client's progress token may equal another client's: the server gets one of
        // Berth's, and its notifications are given the client's back on the way out.
        let _route = context.meta.get_progress_token().map(|theirs| {
            let ours = ProgressToken(NumberOrString::String(Uuid::now_v7().to_string().into()));
            params.set_progress_token(ours.clone());
            let (route, mut notifications) = upstream.progress().open(ours);
            let peer = context.peer.clone();
            tokio::spawn(async move {
                while let Some(mut progress) = notifications.recv().await {
                    progress.progress_token = theirs.clone();
                    if peer.notify_progress(progress).await.is_err() {
                        break;
                    }
                }
            });
            route
        });
        let call = upstream.within(listing.call_timeout, upstream.peer().call_tool(params));
        tokio::select! {
            answer = call => answer.map_err(Failure::Upstream),
            // Dropping the request makes the SDK tell the server it is cancelled.
            () = context.ct.cancelled() => Err(Failure::Cancelled),
        }
    }
}

impl Drop for GatewaySession {
    fn drop(&mut self) {
        self.ended.cancel();
    }
}

/// Why a call got no answer from its tool.
#[derive(Debug)]
enum Failure {
    Unreachable(String),
    Upstream(UpstreamError),
    Cancelled,
}

impl Failure {
    fn class(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::Upstream(UpstreamError::Timeout(_)) => "timeout",
            Self::Upstream(UpstreamError::Closed) => "closed",
            Self::Upstream(UpstreamError::Rpc(_)) => "upstream_error",
            Self::Upstream(UpstreamError::Protocol(_)) => "protocol",
            Self::Cancelled => "cancelled",
        }
    }

    /// The JSON-RPC error the client gets: the server's own when it answered with one.
    fn into_error(self, server: &str) -> ErrorData {
        let class = self.class();
        let data = Some(json!({"server": server, "error_class": class}));
        match self {
            Self::Upstream(UpstreamError::Rpc(error)) => error,
            Self::Unreachable(why) => ErrorData::internal_error(
                format!("the server `{server}` cannot be reached: {why}"),
                data,
            ),
            Self::Upstream(other) => ErrorData::internal_error(
                format!("the server `{server}` failed the call: {other}"),
                data,
            ),
            Self::Cancelled => ErrorData::internal_error("the call was cancelled", data),
        }
    }
}

fn mcp_tool(name: &str, tool: &berth_domain::server::Tool) -> McpTool {
    let schema = match &tool.input_schema {
        Some(serde_json::Value::Object(schema)) => schema.clone(),
        _ => json!({"type": "object"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    let mut listed = McpTool::new(
        name.to_owned(),
        tool.description.clone().unwrap_or_default(),
        Arc::new(schema),
    );
    if tool.description.is_none() {
        listed.description = None;
    }
    listed
}

fn page_start(request: Option<&PaginatedRequestParams>) -> Result<usize, ErrorData> {
    match request.and_then(|r| r.cursor.as_deref()) {
        None => Ok(0),
        Some(cursor) => cursor.parse().map_err(|_| {
            ErrorData::invalid_params("`cursor` is not one this gateway gave out", None)
        }),
    }
}

impl ServerHandler for GatewaySession {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("berth", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Berth's gateway: the tools of your running MCP servers, each named <server>__<tool>.",
        )
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let Ok(caller) = self.caller(&context.extensions) else {
            return;
        };
        let owner = caller.owner();
        let shared = Arc::clone(&self.shared);
        let ended = self.ended.clone();
        let peer = context.peer.clone();
        let mut changes = shared.directory.changes();
        let mut seen = shared.directory.view(&owner, &Everything);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = ended.cancelled() => return,
                    changed = changes.changed() => if changed.is_err() { return },
                }
                let now = shared.directory.view(&owner, &Everything);
                if now != seen {
                    seen = now;
                    if peer.notify_tool_list_changed().await.is_err() {
                        return;
                    }
                }
            }
        });
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = self.caller(&context.extensions)?;
        let view = self.view(&caller.owner());
        let start = page_start(request.as_ref())?;
        let tools: Vec<McpTool> = view
            .tools()
            .iter()
            .skip(start)
            .take(TOOLS_PAGE)
            .map(|t| mcp_tool(&t.name, &t.tool))
            .collect();
        let next = start + tools.len();
        let mut result = ListToolsResult::with_all_items(tools);
        if next < view.tools().len() {
            result.next_cursor = Some(next.to_string());
        }
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = self.caller(&context.extensions)?;
        let view = self.view(&caller.owner());
        let Some(found) = view.find(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!("no tool named `{}` is available to you", request.name),
                None,
            ));
        };
        let listing = Arc::clone(&found.listing);
        let tool = found.tool.name.clone();
        let called = Called::new(&caller, &listing, &tool, request.arguments.as_ref());
        let started = Instant::now();
        let answer = self.forward(&listing, &tool, request, &context).await;
        let elapsed = started.elapsed();
        match answer {
            Ok(mut result) => {
                record::spawn(&self.shared.bus, called.answered(&result, elapsed), &caller);
                // An older server leaves the result's type out; the newest revision
                // requires it (the SDK drops it again for clients of older ones).
                result.result_type.get_or_insert(ResultType::COMPLETE);
                Ok(CallToolResponse::Complete(result))
            }
            Err(failure) => {
                record::spawn(
                    &self.shared.bus,
                    called.failed(failure.class(), elapsed),
                    &caller,
                );
                Err(failure.into_error(&listing.name))
            }
        }
    }
}
