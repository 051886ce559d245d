//! The MCP health probe: an `initialize` handshake and `tools/list` over a server's
//! stdio or streamable-HTTP endpoint, answering "is it healthy, which protocol version,
//! which tools" for the process manager.
//!
//! Written against the JSON-RPC subset it needs rather than on an SDK, because a probe
//! must survive servers that print noise, never answer, or answer wrongly, and report
//! each as a distinct [`ProbeError`].

mod http;
mod jsonrpc;
mod stdio;

use std::time::Duration;

use async_trait::async_trait;
use berth_application::runtime::{McpEndpoint, McpProbe, ProbeError, ProbeReport};
use berth_domain::server::{Tool, MAX_INPUT_SCHEMA_BYTES};
use serde_json::{json, Value};
use tokio::time::Instant;

use self::http::HttpChannel;
use self::stdio::StdioChannel;

/// The protocol version the probe asks for.
pub const REQUESTED_PROTOCOL_VERSION: &str = "2025-06-18";

/// The protocol versions the probe accepts from a server, newest first.
pub const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] =
    ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The largest single message (a stdio line, an HTTP body or event) the probe reads, so
/// that a broken server cannot make Berth buffer without end.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The most `tools/list` pages followed before the server is judged to be looping.
pub const MAX_TOOL_PAGES: usize = 100;

const INITIALIZE: &str = "initialize";
const TOOLS_LIST: &str = "tools/list";

/// The [`McpProbe`] Berth uses: speaks MCP over [`McpEndpoint::Stdio`] (newline-delimited
/// JSON-RPC) and [`McpEndpoint::Http`] (streamable HTTP, JSON or event-stream answers).
#[derive(Debug, Clone, Copy, Default)]
pub struct McpClientProbe;

impl McpClientProbe {
    /// A probe.
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl McpProbe for McpClientProbe {
    #[tracing::instrument(skip_all, fields(transport = transport_name(&endpoint)))]
    async fn probe(
        &self,
        endpoint: McpEndpoint,
        timeout: Duration,
    ) -> Result<ProbeReport, ProbeError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut channel = match endpoint {
            McpEndpoint::Stdio(connection) => Channel::Stdio(StdioChannel::new(connection)),
            McpEndpoint::Http(url) => Channel::Http(HttpChannel::new(&url)?),
        };
        let outcome = handshake(&mut channel, deadline, timeout).await;
        let latency = started.elapsed();
        channel.close(deadline).await;
        match outcome {
            Ok((server, tools)) => {
                tracing::debug!(?latency, tools = tools.len(), "MCP probe succeeded");
                Ok(ProbeReport {
                    protocol_version: server.protocol_version,
                    server_info: server.server_info,
                    tools,
                    latency,
                })
            }
            Err(error) => {
                tracing::debug!(%error, "MCP probe failed");
                Err(error)
            }
        }
    }
}

fn transport_name(endpoint: &McpEndpoint) -> &'static str {
    match endpoint {
        McpEndpoint::Stdio(_) => "stdio",
        McpEndpoint::Http(_) => "http",
    }
}

/// What `initialize` told us.
#[derive(Debug, Clone, PartialEq)]
struct Initialized {
    protocol_version: String,
    server_info: Value,
    offers_tools: bool,
}

async fn handshake(
    channel: &mut Channel,
    deadline: Instant,
    timeout: Duration,
) -> Result<(Initialized, Vec<Tool>), ProbeError> {
    let params = json!({
        "protocolVersion": REQUESTED_PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "berth", "version": env!("CARGO_PKG_VERSION")},
    });
    let result = channel
        .call(INITIALIZE, 1, INITIALIZE, Some(params), deadline, timeout)
        .await?;
    let server = read_initialize(&result)?;
    channel.agree(&server.protocol_version);
    channel
        .notify(INITIALIZE, "notifications/initialized", deadline, timeout)
        .await?;
    if !server.offers_tools {
        // Servers without the tools capability need not implement tools/list at all.
        return Ok((server, Vec::new()));
    }
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..MAX_TOOL_PAGES {
        let params = cursor.as_ref().map(|c| json!({"cursor": c}));
        let id = 2 + page as u64;
        let result = channel
            .call(TOOLS_LIST, id, TOOLS_LIST, params, deadline, timeout)
            .await?;
        let (page_tools, next) = read_tools_page(&result)?;
        tools.extend(page_tools);
        match next {
            None => return Ok((server, tools)),
            Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                return Err(protocol(
                    TOOLS_LIST,
                    format!("the cursor `{}` repeats itself", jsonrpc::excerpt(&next)),
                ));
            }
            Some(next) => cursor = Some(next),
        }
    }
    Err(protocol(
        TOOLS_LIST,
        format!("more than {MAX_TOOL_PAGES} pages of tools; giving up"),
    ))
}

/// Checks an `initialize` result: a version we speak, `serverInfo` with a name, and
/// `capabilities`.
fn read_initialize(result: &Value) -> Result<Initialized, ProbeError> {
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| protocol(INITIALIZE, "the result has no `protocolVersion`"))?;
    if !SUPPORTED_PROTOCOL_VERSIONS.contains(&version) {
        return Err(protocol(
            INITIALIZE,
            format!(
                "the server chose protocol version `{}`, which Berth does not speak (it speaks {})",
                jsonrpc::excerpt(version),
                SUPPORTED_PROTOCOL_VERSIONS.join(", ")
            ),
        ));
    }
    let server_info = result
        .get("serverInfo")
        .filter(|info| info.get("name").is_some_and(Value::is_string))
        .ok_or_else(|| protocol(INITIALIZE, "the result has no `serverInfo` with a `name`"))?;
    let capabilities = result
        .get("capabilities")
        .and_then(Value::as_object)
        .ok_or_else(|| protocol(INITIALIZE, "the result has no `capabilities` object"))?;
    Ok(Initialized {
        protocol_version: version.to_owned(),
        server_info: server_info.clone(),
        offers_tools: capabilities.contains_key("tools"),
    })
}

/// A tool's `inputSchema` as kept: a JSON object no larger than
/// [`MAX_INPUT_SCHEMA_BYTES`]; anything else is left out (and logged), not refused, so one
/// odd tool does not keep a server from running.
fn input_schema(tool: &str, schema: Option<&Value>) -> Option<Value> {
    let schema = schema?;
    if !schema.is_object() {
        tracing::warn!(tool, "a tool's inputSchema is not a JSON object; left out");
        return None;
    }
    let size = serde_json::to_vec(schema).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_INPUT_SCHEMA_BYTES {
        tracing::warn!(
            tool,
            size,
            "a tool's inputSchema is too large to keep; left out"
        );
        return None;
    }
    Some(schema.clone())
}

/// Reads one `tools/list` page: its tools and the cursor of the next page, if any.
fn read_tools_page(result: &Value) -> Result<(Vec<Tool>, Option<String>), ProbeError> {
    let listed = result
        .get("tools")
        .and_then(Value::as_array)
        .ok_or_else(|| protocol(TOOLS_LIST, "the result has no `tools` array"))?;
    let tools = listed
        .iter()
        .enumerate()
        .map(|(index, tool)| {
            let name = tool
                .get("name")
                .and_then(Value::as_str)
                .filter(|name| !name.is_empty())
                .ok_or_else(|| protocol(TOOLS_LIST, format!("tool #{index} has no `name`")))?;
            Ok(Tool {
                name: name.to_owned(),
                description: tool
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                input_schema: input_schema(name, tool.get("inputSchema")),
            })
        })
        .collect::<Result<Vec<_>, ProbeError>>()?;
    let next = match result.get("nextCursor") {
        None | Some(Value::Null) => None,
        Some(Value::String(cursor)) if cursor.is_empty() => None,
        Some(Value::String(cursor)) => Some(cursor.clone()),
        Some(_) => return Err(protocol(TOOLS_LIST, "`nextCursor` is not a string")),
    };
    Ok((tools, next))
}

fn protocol(step: &'static str, detail: impl Into<String>) -> ProbeError {
    ProbeError::Protocol {
        step,
        detail: detail.into(),
    }
}

/// One transport's way of exchanging JSON-RPC messages.
enum Channel {
    Stdio(StdioChannel),
    Http(HttpChannel),
}

impl Channel {
    /// Sends a request and waits, until `deadline`, for its result.
    async fn call(
        &mut self,
        step: &'static str,
        id: u64,
        method: &str,
        params: Option<Value>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Value, ProbeError> {
        let message = jsonrpc::request(id, method, params);
        let answered = match self {
            Self::Stdio(channel) => {
                tokio::time::timeout_at(deadline, channel.request(step, id, &message)).await
            }
            Self::Http(channel) => {
                tokio::time::timeout_at(deadline, channel.request(step, id, &message)).await
            }
        };
        answered.unwrap_or_else(|_| Err(self.timed_out(step, timeout)))
    }

    /// Sends a notification, until `deadline`.
    async fn notify(
        &mut self,
        step: &'static str,
        method: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), ProbeError> {
        let message = jsonrpc::notification(method);
        let sent = match self {
            Self::Stdio(channel) => {
                tokio::time::timeout_at(deadline, channel.send(step, &message)).await
            }
            Self::Http(channel) => {
                tokio::time::timeout_at(deadline, channel.notify(step, &message)).await
            }
        };
        sent.unwrap_or_else(|_| Err(self.timed_out(step, timeout)))
    }

    /// Remembers the negotiated version (HTTP sends it as a header from now on).
    fn agree(&mut self, version: &str) {
        if let Self::Http(channel) = self {
            channel.agree(version);
        }
    }

    fn timed_out(&self, step: &'static str, timeout: Duration) -> ProbeError {
        match self {
            Self::Stdio(channel) => channel.timed_out(step, timeout),
            Self::Http(_) => ProbeError::Timeout { step, timeout },
        }
    }

    /// Ends the session where the transport has one.
    async fn close(self, deadline: Instant) {
        if let Self::Http(channel) = self {
            channel.close(deadline).await;
        }
    }
}

#[cfg(test)]
mod tests;
