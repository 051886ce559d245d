//! The MCP server of one registered API, run inside Berth: `tools/list` answers the
//! entry's operations, `tools/call` makes the HTTP request. Berth's own MCP client talks
//! to it over an in-process pipe, as it talks to a process over its stdio, so the
//! gateway, health checks and call records treat it like any other server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_domain::catalog::openapi::{ApiAuth, ApiOperation};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    Tool,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};
use secrecy::SecretString;
use serde_json::Map;

use super::call::{answer, request, CallError};
use super::log::ApiLog;
use crate::error::causes;

/// What calling an API needs.
pub struct ApiTarget {
    /// The guarded HTTP client (addresses checked, no redirects to other hosts).
    pub client: reqwest::Client,
    /// Where requests go.
    pub base_url: String,
    /// How they authenticate.
    pub auth: ApiAuth,
    /// The server's config and opened secrets.
    pub config: BTreeMap<String, SecretString>,
    /// The largest answer read.
    pub max_answer_bytes: usize,
    /// How long one request may take.
    pub timeout: Duration,
}

/// The MCP server of one running API server.
#[derive(Clone)]
pub struct ApiServer {
    operations: Arc<Vec<ApiOperation>>,
    target: Arc<ApiTarget>,
    log: ApiLog,
}

impl ApiServer {
    /// A server offering `operations`, calling `target`, writing what it does to `log`.
    pub fn new(operations: Arc<Vec<ApiOperation>>, target: Arc<ApiTarget>, log: ApiLog) -> Self {
        Self {
            operations,
            target,
            log,
        }
    }

    async fn call(
        &self,
        operation: &ApiOperation,
        arguments: &Map<String, serde_json::Value>,
    ) -> CallToolResult {
        let t = &self.target;
        let started = Instant::now();
        let sent = match request(
            &t.client,
            &t.base_url,
            operation,
            &t.auth,
            &t.config,
            arguments,
        ) {
            Ok(builder) => builder.timeout(t.timeout).send().await,
            Err(e) => return CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
        };
        let result = match sent {
            Ok(response) => answer(response, t.max_answer_bytes).await,
            Err(e) if e.is_timeout() => Err(CallError::Transport(format!(
                "the API did not answer within {:?}",
                t.timeout
            ))),
            // Without the URL: a query parameter may carry the credential.
            Err(e) => Err(CallError::Transport(causes(&e.without_url()))),
        };
        // The path template, never the URL: a query credential must not reach the log.
        let took = started.elapsed().as_millis();
        match result {
            Ok(answer) => {
                self.log.write(format!(
                    "{} {} -> {} in {took} ms",
                    operation.method, operation.path, answer.status
                ));
                if answer.is_error {
                    CallToolResult::error(vec![ContentBlock::text(answer.text)])
                } else {
                    CallToolResult::success(vec![ContentBlock::text(answer.text)])
                }
            }
            Err(e) => {
                self.log.write(format!(
                    "{} {} failed in {took} ms: {e}",
                    operation.method, operation.path
                ));
                CallToolResult::error(vec![ContentBlock::text(e.to_string())])
            }
        }
    }
}

fn tool(operation: &ApiOperation) -> Tool {
    let schema = operation
        .input_schema
        .as_object()
        .cloned()
        .unwrap_or_default();
    Tool::new(
        operation.tool.clone(),
        operation.description.clone(),
        Arc::new(schema),
    )
}

impl ServerHandler for ApiServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("berth-openapi", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            self.operations.iter().map(tool).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let operation = self
            .operations
            .iter()
            .find(|o| o.tool == request.name)
            .ok_or_else(|| {
                ErrorData::invalid_params(format!("no tool is called `{}`", request.name), None)
            })?;
        let arguments = request.arguments.unwrap_or_default();
        Ok(CallToolResponse::Complete(
            self.call(operation, &arguments).await,
        ))
    }
}
