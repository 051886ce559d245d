//! The MCP gateway end to end: Berth running fixture servers as local processes (over
//! stdio and over HTTP), the official Python MCP SDK as the client, a real PostgreSQL.

mod api_support;

use std::time::Duration;

use api_support::{process_fixture_entry, user, TestApp};
use berth_tests::mcp_client::McpClient;
use serde_json::{json, Value};

/// Registers the fixture over `transport`, creates server `name` of it as the admin and
/// waits until it runs; returns its id.
async fn running_fixture(app: &TestApp, name: &str, transport: &str) -> String {
    let entry = app
        .register(&process_fixture_entry(
            &format!("{name}-entry"),
            transport,
            &[],
        ))
        .await;
    let id = app
        .create_server(&json!({"catalog_id": entry, "name": name}))
        .await;
    app.start(&id).await;
    app.until_state(&id, "running").await;
    id
}

fn text_of(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {answer}"))
        .to_owned()
}

/// Waits until the audit trail holds `count` tool calls and returns them.
async fn tool_calls(app: &TestApp, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = app
            .get("/api/v1/audit?action=tool.called&page_size=500")
            .await;
        page.expect(200);
        let items = page.json()["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= count || tokio::time::Instant::now() > deadline {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_python_sdk_lists_and_calls_tools_of_stdio_and_http_servers_and_each_call_is_audited() {
    let app = TestApp::spawn_with_processes().await;
    let stdio = running_fixture(&app, "files", "stdio").await;
    let http = running_fixture(&app, "web", "http").await;
    let url = app.url("/mcp");

    for mode in ["legacy", "auto"] {
        let mut client = McpClient::connect(&url, app.token(), mode).await;
        let names = client.tool_names().await;
        assert_eq!(
            names,
            [
                "files__add",
                "files__echo",
                "files__env_keys",
                "web__add",
                "web__echo",
                "web__env_keys"
            ],
            "{mode}"
        );
        let tools = client.tools().await;
        let echo = tools.iter().find(|t| t["name"] == "files__echo").unwrap();
        assert_eq!(
            echo["inputSchema"]["properties"]["text"]["type"], "string",
            "{echo}"
        );
        assert!(echo["description"].is_string(), "{echo}");

        let answer = client
            .call("files__echo", json!({"text": format!("hello {mode}")}))
            .await;
        assert_eq!(text_of(&answer), format!("hello {mode}"), "{answer}");
        let answer = client.call("web__add", json!({"a": 2, "b": 40})).await;
        assert_eq!(text_of(&answer), "42", "{answer}");
        // A tool error is the tool's answer, not a failure of the call.
        let answer = client.call("web__echo", json!({})).await;
        assert_eq!(answer["result"]["isError"], true, "{answer}");
        client.close().await;
    }

    // Six calls, each in the audit trail as the caller's, with its server and tool.
    let calls = tool_calls(&app, 6).await;
    assert_eq!(calls.len(), 6, "{calls:#?}");
    assert!(
        calls.iter().all(|c| c["actor"] == "user:admin"),
        "{calls:#?}"
    );
    let events = app
        .get("/api/v1/events?aggregate_type=tool&limit=100")
        .await;
    events.expect(200);
    let payloads: Vec<Value> = events.json()["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["payload"].clone())
        .collect();
    let outcome = |server: &str, tool: &str| -> Vec<String> {
        payloads
            .iter()
            .filter(|p| p["server_id"] == server && p["tool"] == tool)
            .map(|p| p["outcome"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(outcome(&stdio, "echo"), ["ok", "ok"], "{payloads:#?}");
    assert_eq!(outcome(&http, "add"), ["ok", "ok"], "{payloads:#?}");
    assert_eq!(
        outcome(&http, "echo"),
        ["tool_error", "tool_error"],
        "{payloads:#?}"
    );
    // What was sent is kept as a digest and a size, never as text.
    let first = &payloads[0];
    assert_eq!(
        first["arguments_sha256"].as_str().map(str::len),
        Some(64),
        "{first}"
    );
    assert!(!events.json().to_string().contains("hello legacy"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_users_servers_are_never_listed_or_callable() {
    let app = TestApp::spawn_with_processes().await;
    running_fixture(&app, "files", "stdio").await;
    let bob = user(&app, "bob", "operator").await;
    let url = app.url("/mcp");

    let mut client = McpClient::connect(&url, &bob.key, "legacy").await;
    assert!(client.tool_names().await.is_empty());
    let answer = client
        .call("files__echo", json!({"text": "mine now"}))
        .await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    client.close().await;

    // Nothing of bob's attempt is recorded as a call.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(tool_calls(&app, 0).await.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_credential_the_gateway_answers_401_pointing_at_its_resource_metadata() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::new();
    let refused = client
        .post(app.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let challenge = refused
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let metadata_url = app.url("/.well-known/oauth-protected-resource");
    assert_eq!(
        challenge,
        format!("Bearer resource_metadata=\"{metadata_url}\"")
    );
    let metadata: Value = client
        .get(&metadata_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], app.url("/mcp"));
    assert_eq!(metadata["bearer_methods_supported"], json!(["header"]));
    app.stop().await;
}
