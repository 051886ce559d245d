//! Upstream sessions against scripted servers on in-memory pipes.

use std::time::Duration;

use berth_application::runtime::{McpEndpoint, ProbeError, ProbeReport, StdioConnection};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{HttpClients, Upstream, MAX_MESSAGE_BYTES};

enum Out {
    Line(String),
    Close,
}

fn line(message: Value) -> Out {
    Out::Line(message.to_string())
}

/// A server on an in-memory pipe that answers each line it reads with `handler`'s lines.
fn scripted(mut handler: impl FnMut(Value) -> Vec<Out> + Send + 'static) -> McpEndpoint {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (client_reader, client_writer) = tokio::io::split(client);
    tokio::spawn(async move {
        let (reader, mut writer) = tokio::io::split(server);
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(text)) = lines.next_line().await {
            let message: Value = serde_json::from_str(&text).expect("the client writes JSON lines");
            for out in handler(message) {
                match out {
                    Out::Line(text) => {
                        if writer
                            .write_all(format!("{text}\n").as_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Out::Close => return,
                }
            }
        }
    });
    McpEndpoint::Stdio(StdioConnection {
        reader: Box::new(client_reader),
        writer: Box::new(client_writer),
    })
}

fn initialize_result(version: &str) -> Value {
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {}},
        "serverInfo": {"name": "scripted", "version": "1.0.0"}
    })
}

/// A well-behaved server with two pages of tools.
fn good(message: Value) -> Vec<Out> {
    let id = message["id"].clone();
    match message["method"].as_str() {
        Some("initialize") => {
            assert_eq!(message["params"]["clientInfo"]["name"], "berth");
            vec![line(
                json!({"jsonrpc": "2.0", "id": id, "result": initialize_result("2025-06-18")}),
            )]
        }
        Some("tools/list") if message["params"]["cursor"] == "page-2" => vec![line(json!({
            "jsonrpc": "2.0", "id": id,
            "result": {"tools": [{"name": "second", "inputSchema": {"type": "object"}}]}
        }))],
        Some("tools/list") => vec![line(json!({
            "jsonrpc": "2.0", "id": id,
            "result": {"tools": [{"name": "first", "description": "The first.", "inputSchema": {"type": "object"}}], "nextCursor": "page-2"}
        }))],
        _ => Vec::new(),
    }
}

async fn probe(endpoint: McpEndpoint) -> Result<ProbeReport, ProbeError> {
    probe_within(endpoint, Duration::from_millis(500)).await
}

async fn probe_within(endpoint: McpEndpoint, timeout: Duration) -> Result<ProbeReport, ProbeError> {
    let upstream = Upstream::open(endpoint, timeout, &HttpClients::default()).await?;
    upstream.report(timeout).await
}

#[tokio::test]
async fn a_good_server_reports_its_version_info_and_every_page_of_tools() {
    let report = probe(scripted(good)).await.unwrap();
    assert_eq!(report.protocol_version, "2025-06-18");
    assert_eq!(report.server_info["name"], "scripted");
    let tools: Vec<_> = report
        .tools
        .iter()
        .map(|t| (t.name.as_str(), t.description.as_deref()))
        .collect();
    assert_eq!(tools, [("first", Some("The first.")), ("second", None)]);
    assert!(report.latency < Duration::from_millis(500));
}

#[tokio::test]
async fn noise_notifications_and_server_requests_are_handled_on_the_way() {
    let mut pinged = false;
    let endpoint = scripted(move |message| match message["method"].as_str() {
        Some("initialize") => {
            let mut out = vec![
                Out::Line("Starting server on stdio…".into()),
                Out::Line(String::new()),
                line(json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {}})),
                line(json!({"jsonrpc": "2.0", "id": "srv-1", "method": "ping"})),
            ];
            out.extend(good(message));
            out
        }
        None => {
            // Our answer to the server's ping.
            assert_eq!(
                message,
                json!({"jsonrpc": "2.0", "id": "srv-1", "result": {}})
            );
            pinged = true;
            Vec::new()
        }
        Some("tools/list") => {
            assert!(
                pinged,
                "the probe answers the server's ping before moving on"
            );
            good(message)
        }
        Some(_) => Vec::new(),
    });
    let report = probe(endpoint).await.unwrap();
    assert_eq!(report.tools.len(), 2);
}

#[tokio::test]
async fn a_server_without_tools_is_not_asked_for_them() {
    let endpoint = scripted(|message| match message["method"].as_str() {
        Some("initialize") => vec![line(
            json!({"jsonrpc": "2.0", "id": message["id"], "result": {
                "protocolVersion": "2024-11-05", "capabilities": {}, "serverInfo": {"name": "bare", "version": "0"}
            }}),
        )],
        Some("tools/list") => panic!("tools/list sent to a server without tools"),
        _ => Vec::new(),
    });
    let report = probe(endpoint).await.unwrap();
    assert_eq!(report.protocol_version, "2024-11-05");
    assert!(report.tools.is_empty());
}

#[tokio::test]
async fn silence_is_a_timeout_in_the_step_it_happens() {
    let error = probe(scripted(|_| Vec::new())).await.unwrap_err();
    assert!(
        matches!(
            error,
            ProbeError::Timeout {
                step: "initialize",
                ..
            }
        ),
        "{error}"
    );

    let stalls_on_tools = scripted(|message| match message["method"].as_str() {
        Some("tools/list") => Vec::new(),
        _ => good(message),
    });
    let error = probe(stalls_on_tools).await.unwrap_err();
    assert!(
        matches!(
            error,
            ProbeError::Timeout {
                step: "tools/list",
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn closing_is_reported_as_closed() {
    let error = probe(scripted(|_| vec![Out::Close])).await.unwrap_err();
    assert!(
        matches!(error, ProbeError::Closed { step: "initialize" }),
        "{error}"
    );
}

#[tokio::test]
async fn error_answers_are_protocol_errors() {
    let endpoint = scripted(|message| {
        vec![line(json!({
            "jsonrpc": "2.0", "id": message["id"],
            "error": {"code": -32600, "message": "go away"}
        }))]
    });
    let error = probe(endpoint).await.unwrap_err();
    assert!(
        matches!(&error, ProbeError::Protocol { step: "initialize", detail } if detail.contains("go away")),
        "{error}"
    );

    let refuses_tools = scripted(|message| match message["method"].as_str() {
        Some("tools/list") => vec![line(json!({
            "jsonrpc": "2.0", "id": message["id"],
            "error": {"code": -32603, "message": "broken"}
        }))],
        _ => good(message),
    });
    let error = probe(refuses_tools).await.unwrap_err();
    assert!(
        matches!(&error, ProbeError::Protocol { step: "tools/list", detail } if detail.contains("broken")),
        "{error}"
    );
}

#[tokio::test]
async fn a_tool_list_that_loops_is_a_protocol_error() {
    let endpoint = scripted(|message| match message["method"].as_str() {
        Some("tools/list") => vec![line(json!({
            "jsonrpc": "2.0", "id": message["id"],
            "result": {"tools": [], "nextCursor": "same"}
        }))],
        _ => good(message),
    });
    let error = probe(endpoint).await.unwrap_err();
    assert!(
        matches!(&error, ProbeError::Protocol { step: "tools/list", detail } if detail.contains("repeats")),
        "{error}"
    );
}

#[tokio::test]
async fn an_endless_line_is_dropped_before_it_fills_memory_and_the_session_goes_on() {
    let mut first = true;
    let endpoint = scripted(move |message| {
        let mut out = Vec::new();
        if std::mem::take(&mut first) {
            out.push(Out::Line("x".repeat(MAX_MESSAGE_BYTES + 10)));
        }
        out.extend(good(message));
        out
    });
    let report = probe_within(endpoint, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(report.tools.len(), 2);
}

#[tokio::test]
async fn nobody_listening_over_http_is_closed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let error = probe_within(
        McpEndpoint::Http(format!("http://127.0.0.1:{port}/mcp")),
        Duration::from_secs(2),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, ProbeError::Closed { step: "initialize" }),
        "{error}"
    );
}

#[tokio::test]
async fn progress_notifications_reach_the_route_of_their_token() {
    use rmcp::model::CallToolRequestParams;
    let endpoint = scripted(|message| match message["method"].as_str() {
        Some("tools/call") => {
            let token = message["params"]["_meta"]["progressToken"].clone();
            let note = |n: u64| {
                line(json!({"jsonrpc": "2.0", "method": "notifications/progress",
                            "params": {"progressToken": token, "progress": n, "total": 2}}))
            };
            vec![
                note(1),
                note(2),
                line(json!({"jsonrpc": "2.0", "id": message["id"],
                            "result": {"content": [{"type": "text", "text": "done"}]}})),
            ]
        }
        _ => good(message),
    });
    let upstream = Upstream::open(endpoint, Duration::from_secs(2), &HttpClients::default())
        .await
        .unwrap();
    let (to, mut notes) = tokio::sync::mpsc::channel(8);
    let result = upstream
        .call_tool(
            CallToolRequestParams::new("first"),
            Duration::from_secs(2),
            Some(to),
            std::future::pending(),
        )
        .await
        .unwrap();
    assert_eq!(result.content.len(), 1);
    let mut seen = Vec::new();
    while let Ok(note) = notes.try_recv() {
        seen.push(note.progress);
    }
    assert_eq!(seen, [1.0, 2.0]);
}
