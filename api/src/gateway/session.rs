//! One gateway session: what the SDK calls for each MCP method a client sends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use berth_application::gateway::names::is_valid_name;
use berth_application::gateway::{Everything, Listing, Selection, View};
use berth_domain::profile::ProfileId;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorData, Extensions, GetPromptRequestParams,
    GetPromptResponse, Implementation, ListPromptsResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities,
    ServerConfig, Tool as McpTool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{RoleServer, ServerHandler};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::caller::GatewayCaller;
use super::{calls, extras, Shared};

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
    /// Set once the watcher runs: a client repeating `notifications/initialized` gets
    /// no second one.
    watching: AtomicBool,
}

impl GatewaySession {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            bound: OnceLock::new(),
            ended: CancellationToken::new(),
            watching: AtomicBool::new(false),
        }
    }

    /// The caller of this request, who must be the session's.
    fn caller(&self, extensions: &Extensions) -> Result<GatewayCaller, ErrorData> {
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
}

impl Shared {
    /// The caller's tools, less those of servers whose circuit is open.
    pub(crate) fn view(&self, caller: &GatewayCaller) -> View {
        self.callable(caller)
            .without(|server_id| self.guards.hides(server_id))
    }

    /// Every tool of the caller's (in the profile the request came through, if any),
    /// those of servers whose circuit is open included: a call to one of them is refused
    /// saying when to try again, not as an unknown tool.
    pub(crate) fn callable(&self, caller: &GatewayCaller) -> View {
        self.directory
            .view(&caller.principal.caller, selection(caller))
    }

    /// The caller's servers, less those whose circuit is open.
    fn servers(&self, caller: &GatewayCaller) -> Vec<Arc<Listing>> {
        let mut servers = self
            .directory
            .servers(&caller.principal.caller, selection(caller));
        servers.retain(|l| !self.guards.hides(l.server_id));
        servers
    }
}

/// What of the caller's servers the request may use: its profile's selection, or all.
fn selection(caller: &GatewayCaller) -> &dyn Selection {
    match &caller.profile {
        Some(profile) => profile.as_ref(),
        None => &Everything,
    }
}

impl Drop for GatewaySession {
    fn drop(&mut self) {
        self.ended.cancel();
    }
}

fn server_ids(servers: &[Arc<Listing>]) -> Vec<uuid::Uuid> {
    servers.iter().map(|l| l.server_id).collect()
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

/// The cursor of a `tools/list` request: a tool name this gateway gave out.
fn cursor(request: Option<&PaginatedRequestParams>) -> Result<Option<&str>, ErrorData> {
    match request.and_then(|r| r.cursor.as_deref()) {
        Some(cursor) if !is_valid_name(cursor) => Err(ErrorData::invalid_params(
            "`cursor` is not one this gateway gave out",
            None,
        )),
        cursor => Ok(cursor),
    }
}

impl ServerHandler for GatewaySession {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .enable_resources_list_changed()
                .enable_prompts()
                .enable_prompts_list_changed()
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
        if self.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let ended = self.ended.clone();
        let peer = context.peer.clone();
        let mut changes = shared.directory.changes();
        let mut seen = shared.view(&caller);
        let mut servers_seen = server_ids(&shared.servers(&caller));
        let mut caller = caller;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = ended.cancelled() => return,
                    changed = changes.changed() => if changed.is_err() { return },
                }
                // The profile may have changed too: the list follows its latest version.
                if let Some(name) = caller.profile_name().map(str::to_owned) {
                    match shared
                        .bus
                        .load_profile(ProfileId::of(&caller.owner(), &name))
                        .await
                    {
                        Ok(profile) => caller.profile = Some(Arc::new(profile)),
                        Err(e) => tracing::debug!(error = %e, "cannot reload a session's profile"),
                    }
                }
                let now = shared.view(&caller);
                if now != seen {
                    seen = now;
                    if peer.notify_tool_list_changed().await.is_err() {
                        return;
                    }
                }
                // Resources and prompts are asked for live: they change with the servers.
                let servers_now = server_ids(&shared.servers(&caller));
                if servers_now != servers_seen {
                    servers_seen = servers_now;
                    if peer.notify_resource_list_changed().await.is_err()
                        || peer.notify_prompt_list_changed().await.is_err()
                    {
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
        self.shared.progress.caught_up().await;
        let view = self.shared.view(&caller);
        let (page, next) = view.page_after(cursor(request.as_ref())?, TOOLS_PAGE);
        let tools: Vec<McpTool> = page.iter().map(|t| mcp_tool(&t.name, &t.tool)).collect();
        let mut result = ListToolsResult::with_all_items(tools);
        result.next_cursor = next.map(str::to_owned);
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = self.caller(&context.extensions)?;
        let mut view = self.shared.callable(&caller);
        // The hot path reads no head: only a name not found waits for the directory,
        // and it counts against the key's limit, as any request that reaches the store.
        if view.find(&request.name).is_none() {
            calls::within_key_limit(&self.shared, &caller)?;
            if self.shared.progress.caught_up().await {
                view = self.shared.callable(&caller);
            }
        }
        calls::call(&self.shared, &caller, &view, request, &context).await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let caller = self.caller(&context.extensions)?;
        calls::within_key_limit(&self.shared, &caller)?;
        self.shared.progress.caught_up().await;
        Ok(extras::list_resources(&self.shared, &self.shared.servers(&caller)).await)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let caller = self.caller(&context.extensions)?;
        calls::within_key_limit(&self.shared, &caller)?;
        self.shared.progress.caught_up().await;
        extras::read_resource(&self.shared, &self.shared.servers(&caller), &request.uri).await
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let caller = self.caller(&context.extensions)?;
        calls::within_key_limit(&self.shared, &caller)?;
        self.shared.progress.caught_up().await;
        Ok(extras::list_prompts(&self.shared, &self.shared.servers(&caller)).await)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let caller = self.caller(&context.extensions)?;
        calls::within_key_limit(&self.shared, &caller)?;
        self.shared.progress.caught_up().await;
        extras::get_prompt(&self.shared, &self.shared.servers(&caller), request).await
    }
}
