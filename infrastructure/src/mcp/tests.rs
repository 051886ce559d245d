//! The probe against scripted servers on in-memory pipes.

use std::time::Duration;

use berth_application::runtime::{McpEndpoint, McpProbe, ProbeError, StdioConnection};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{McpClientProbe, MAX_MESSAGE_BYTES};

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
            let message: Value = serde_json::from_str(&text).expect("the probe writes JSON lines");
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
            "result": {"tools": [{"name": "first", "description": "The first."}], "nextCursor": "page-2"}
        }))],
        _ => Vec::new(),
    }
}

async fn probe(
    endpoint: McpEndpoint,
) -> Result<berth_application::runtime::ProbeReport, ProbeError> {
    McpClientProbe::new()
        .probe(endpoint, Duration::from_millis(500))
        .await
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
                line(json!({"jsonrpc": "2.0", "id": 99, "result": {}})),
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
                "protocolVersion": "2024-11-05", "capabilities": {}, "serverInfo": {"name": "bare"}
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
async fn output_that_is_only_noise_is_a_protocol_error_not_a_timeout() {
    let closes = scripted(|_| vec![Out::Line("Usage: server [--port N]".into()), Out::Close]);
    let error = probe(closes).await.unwrap_err();
    assert!(
        matches!(&error, ProbeError::Protocol { step: "initialize", detail } if detail.contains("Usage: server")),
        "{error}"
    );
    let stays = scripted(|_| vec![Out::Line("<html>hello</html>".into())]);
    let error = probe(stays).await.unwrap_err();
    assert!(
        matches!(&error, ProbeError::Protocol { step: "initialize", detail } if detail.contains("<html>")),
        "{error}"
    );
}

#[tokio::test]
async fn wrong_answers_are_protocol_errors() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"error": {"code": -32600, "message": "go away"}}),
            "go away",
        ),
        (
            json!({"result": initialize_result("1999-01-01")}),
            "1999-01-01",
        ),
        (
            json!({"result": {"protocolVersion": "2025-06-18", "capabilities": {}}}),
            "serverInfo",
        ),
        (
            json!({"result": {"protocolVersion": "2025-06-18", "serverInfo": {"name": "x"}}}),
            "capabilities",
        ),
    ];
    for (answer, expected) in cases {
        let endpoint = scripted(move |message| {
            let mut reply = answer.clone();
            reply["jsonrpc"] = json!("2.0");
            reply["id"] = message["id"].clone();
            vec![line(reply)]
        });
        let error = probe(endpoint).await.unwrap_err();
        assert!(
            matches!(&error, ProbeError::Protocol { step: "initialize", detail } if detail.contains(expected)),
            "expected `{expected}` in: {error}"
        );
    }
}

#[tokio::test]
async fn broken_tool_lists_are_protocol_errors() {
    for (page, expected) in [
        (
            json!({"tools": [{"description": "no name"}]}),
            "has no `name`",
        ),
        (json!({"tools": [], "nextCursor": 7}), "nextCursor"),
        (json!({"tools": [], "nextCursor": "same"}), "repeats"),
        (json!({}), "no `tools` array"),
    ] {
        let endpoint = scripted(move |message| match message["method"].as_str() {
            Some("tools/list") => vec![line(
                json!({"jsonrpc": "2.0", "id": message["id"], "result": page}),
            )],
            _ => good(message),
        });
        let error = probe(endpoint).await.unwrap_err();
        assert!(
            matches!(&error, ProbeError::Protocol { step: "tools/list", detail } if detail.contains(expected)),
            "expected `{expected}` in: {error}"
        );
    }
}

#[tokio::test]
async fn an_endless_line_is_refused_before_it_fills_memory() {
    let endpoint = scripted(|_| vec![Out::Line("x".repeat(MAX_MESSAGE_BYTES + 10))]);
    let error = McpClientProbe::new()
        .probe(endpoint, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProbeError::Protocol { detail, .. } if detail.contains("longer than")),
        "{error}"
    );
}

#[tokio::test]
async fn unusable_http_urls_are_refused_up_front() {
    for url in ["not a url", "https://127.0.0.1:1/mcp"] {
        let error = McpClientProbe::new()
            .probe(McpEndpoint::Http(url.into()), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                ProbeError::Protocol {
                    step: "initialize",
                    ..
                }
            ),
            "{url}: {error}"
        );
    }
}

#[tokio::test]
async fn nobody_listening_over_http_is_closed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let error = McpClientProbe::new()
        .probe(
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
