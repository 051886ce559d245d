//! The MCP gateway end to end: Berth running fixture servers as local processes (over
//! stdio and over HTTP), the official Python MCP SDK as the client, a real PostgreSQL.

mod api_support;

use std::time::Duration;

use api_support::{process_fixture_entry, processes, user, TestApp};
use berth_api::serve::ServeConfig;
use berth_tests::mcp_client::McpClient;
use serde_json::{json, Value};

/// Registers `entry`, creates server `server` of it (its `catalog_id` filled in) as the
/// admin and waits until it runs; returns its id.
async fn running_server(app: &TestApp, entry: &Value, mut server: Value) -> String {
    server["catalog_id"] = json!(app.register(entry).await);
    let id = app.create_server(&server).await;
    app.start(&id).await;
    app.until_state(&id, "running").await;
    id
}

/// Registers the fixture over `transport`, creates server `name` of it as the admin and
/// waits until it runs; returns its id.
async fn running_fixture(app: &TestApp, name: &str, transport: &str) -> String {
    let entry = process_fixture_entry(&format!("{name}-entry"), transport, &[]);
    running_server(app, &entry, json!({"name": name})).await
}

/// The fixture over stdio with its `sleep`, `crash` and `flood` tools, calls limited to
/// `timeout_secs`, and no automatic restart; running as server `name`.
async fn running_extra_fixture(app: &TestApp, name: &str, timeout_secs: u32) -> String {
    let mut entry =
        process_fixture_entry(&format!("{name}-entry"), "stdio", &["FIXTURE_EXTRA_TOOLS"]);
    entry["gateway"] = json!({"call_timeout_secs": timeout_secs});
    let server = json!({
        "name": name,
        "config": {"FIXTURE_EXTRA_TOOLS": "1"},
        "restart_policy": {"type": "never"}
    });
    running_server(app, &entry, server).await
}

fn gateway_settings(c: &mut ServeConfig) {
    processes(c);
    c.gateway.breaker.failures_to_open = 2;
    c.gateway.breaker.open_for = Duration::from_secs(2);
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

/// `user`'s gateway session once server `server` is shared with them: connected first,
/// then shared, then told (the sharing reaches the gateway from the log, a moment after
/// the answer). Returns the session and its list-change count.
async fn session_shared_with(
    app: &TestApp,
    server: &str,
    user: &api_support::Caller,
) -> (McpClient, u64) {
    let mut session = McpClient::connect(&app.url("/mcp"), &user.key, "legacy").await;
    app.json(
        reqwest::Method::PUT,
        &format!("/api/v1/servers/{server}/sharing"),
        &json!({"users": [user.id]}),
    )
    .await
    .expect(200);
    let shared = session
        .ask(json!({"op": "wait_list_changed", "after": 0}))
        .await;
    assert_eq!(shared["changed"], true, "{shared}");
    let count = shared["count"].as_u64().unwrap_or(0);
    (session, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_python_sdk_lists_and_calls_tools_of_stdio_and_http_servers_and_each_call_is_audited() {
    let app = TestApp::spawn_with_processes().await;
    let stdio = running_fixture(&app, "files", "stdio").await;
    let http = running_fixture(&app, "web", "http").await;
    let url = app.url("/mcp");

    for mode in ["legacy", "auto"] {
        let mut client = McpClient::connect(&url, app.token(), mode).await;
        let info = client.ask(json!({"op": "info"})).await;
        let revision = if mode == "auto" {
            "2026-07-28"
        } else {
            "2025-11-25"
        };
        assert_eq!(info["protocol_version"], revision, "{info}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resources_and_prompts_of_every_server_come_through_and_calls_are_listed_and_counted() {
    let app = TestApp::spawn_with_processes().await;
    let files = running_fixture(&app, "files", "stdio").await;
    let web = running_fixture(&app, "web", "http").await;
    let mut client = McpClient::connect(&app.url("/mcp"), app.token(), "legacy").await;

    let listed = client.ask(json!({"op": "list_resources"})).await;
    let mut uris: Vec<String> = listed["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .map(|r| r["uri"].as_str().unwrap_or_default().to_owned())
        .collect();
    uris.sort();
    let mut expected = vec![
        format!("berth://server/{files}/fixture://greeting"),
        format!("berth://server/{web}/fixture://greeting"),
    ];
    expected.sort();
    assert_eq!(uris, expected);
    let read = client
        .ask(json!({"op": "read_resource", "uri": format!("berth://server/{files}/fixture://greeting")}))
        .await;
    assert_eq!(
        read["contents"][0]["text"], "hello from the fixture",
        "{read}"
    );
    let unknown = client
        .ask(json!({"op": "read_resource", "uri": "berth://server/00000000-0000-0000-0000-000000000000/x"}))
        .await;
    assert!(unknown["error"].is_object(), "{unknown}");

    let prompts = client.ask(json!({"op": "list_prompts"})).await;
    let names: Vec<&str> = prompts["prompts"]
        .as_array()
        .unwrap_or_else(|| panic!("{prompts}"))
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["files__greet", "web__greet"]);
    let prompt = client
        .ask(json!({"op": "get_prompt", "name": "web__greet", "arguments": {"who": "Ada"}}))
        .await;
    assert_eq!(
        prompt["messages"][0]["content"]["text"], "Say hello to Ada.",
        "{prompt}"
    );

    for text in ["one", "two"] {
        let answer = client.call("files__echo", json!({"text": text})).await;
        assert_eq!(text_of(&answer), text);
    }
    client.close().await;

    let calls = app
        .get(&format!(
            "/api/v1/servers/{files}/calls?min_position={}",
            app.head().await
        ))
        .await;
    calls.expect(200);
    let listed = calls.json();
    assert_eq!(listed["total"], 2, "{listed}");
    let first = &listed["items"][0];
    assert_eq!(first["tool"], "echo");
    assert_eq!(first["caller"], "user:admin");
    assert_eq!(first["outcome"], "ok");
    assert!(first["duration_us"].as_i64().unwrap_or(0) > 0, "{first}");
    let none = app
        .get(&format!("/api/v1/servers/{files}/calls?outcome=failed"))
        .await;
    assert_eq!(none.json()["total"], 0);
    app.get(&format!("/api/v1/servers/{files}/calls?outcome=maybe"))
        .await
        .expect_problem(422);
    let metrics = app.get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        text.contains(&format!(
            "berth_gateway_tool_calls_total{{server_id=\"{files}\",tool=\"echo\",outcome=\"ok\"}} 2"
        )),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_server_leaves_the_tool_list_and_comes_back_when_started() {
    let app = TestApp::spawn_with_processes().await;
    let files = running_fixture(&app, "files", "stdio").await;
    running_fixture(&app, "web", "http").await;
    let mut client = McpClient::connect(&app.url("/mcp"), app.token(), "legacy").await;
    assert_eq!(client.tool_names().await.len(), 6);

    app.command(&format!("/api/v1/servers/{files}/stop"))
        .await
        .expect(202);
    let changed = client
        .ask(json!({"op": "wait_list_changed", "after": 0}))
        .await;
    assert_eq!(changed["changed"], true, "{changed}");
    assert_eq!(
        client.tool_names().await,
        ["web__add", "web__echo", "web__env_keys"]
    );
    let gone = client.call("files__echo", json!({"text": "hi"})).await;
    assert_eq!(gone["error"]["code"], -32602, "{gone}");
    let counts = client.ask(json!({"op": "notifications"})).await["counts"].clone();
    for method in [
        "notifications/resources/list_changed",
        "notifications/prompts/list_changed",
    ] {
        assert!(
            counts[method].as_u64().unwrap_or(0) >= 1,
            "{method}: {counts}"
        );
    }

    let count = changed["count"].as_u64().unwrap_or(0);
    app.start(&files).await;
    app.until_state(&files, "running").await;
    let changed = client
        .ask(json!({"op": "wait_list_changed", "after": count}))
        .await;
    assert_eq!(changed["changed"], true, "{changed}");
    assert_eq!(client.tool_names().await.len(), 6);
    let back = client.call("files__echo", json!({"text": "back"})).await;
    assert_eq!(text_of(&back), "back");
    client.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_or_crashing_or_flooding_server_harms_only_its_own_calls() {
    let mut app = TestApp::spawn_with(gateway_settings).await;
    let slow = running_extra_fixture(&app, "slow", 2).await;
    running_fixture(&app, "web", "http").await;
    let url = app.url("/mcp");
    let mut client = McpClient::connect(&url, app.token(), "legacy").await;
    let mut other = McpClient::connect(&url, app.token(), "legacy").await;

    // A call that outlives its entry's timeout fails with a timeout; meanwhile the other
    // server answers at once.
    // (The fixture answers one request at a time: it sleeps on after the timeout.)
    let started = tokio::time::Instant::now();
    let hanging = tokio::spawn(async move {
        let answer = client.call("slow__sleep", json!({"ms": 2_500})).await;
        (client, answer)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quick = other.call("web__echo", json!({"text": "still here"})).await;
    assert_eq!(text_of(&quick), "still here");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let (mut client, answer) = hanging.await.unwrap();
    assert_eq!(
        answer["error"]["data"]["error_class"], "timeout",
        "{answer}"
    );

    // Progress reaches the caller with its own token.
    let answer = client
        .ask(json!({"op": "call", "name": "slow__sleep", "arguments": {"ms": 400}, "progress": true}))
        .await;
    assert_eq!(text_of(&answer), "slept 400 ms");
    assert_eq!(answer["progress"], json!([1.0, 2.0, 3.0]), "{answer}");

    // A long answer comes through; one longer than a message may be is dropped, and the
    // session goes on.
    let big = client
        .call("slow__flood", json!({"bytes": 1_000_000}))
        .await;
    assert_eq!(text_of(&big).len(), 1_000_000);
    let flood = client
        .call("slow__flood", json!({"bytes": 8 * 1024 * 1024}))
        .await;
    assert_eq!(flood["error"]["data"]["error_class"], "timeout", "{flood}");
    let fine = client.call("slow__echo", json!({"text": "fine"})).await;
    assert_eq!(text_of(&fine), "fine");

    // Failures in a row open the circuit: the server's tools leave the list and calls
    // to it fail at once, saying when to try again; once that time is up, one call tries,
    // and its answer closes the circuit.
    for _ in 0..2 {
        let late = client.call("slow__sleep", json!({"ms": 2_500})).await;
        assert_eq!(late["error"]["data"]["error_class"], "timeout", "{late}");
    }
    let gateway = app
        .get(&format!("/api/v1/servers/{slow}/gateway"))
        .await
        .json();
    assert_eq!(gateway["circuit"], "open", "{gateway}");
    assert!(client
        .tool_names()
        .await
        .iter()
        .all(|n| !n.starts_with("slow__")));
    let refused = client.call("slow__echo", json!({"text": "x"})).await;
    assert_eq!(
        refused["error"]["data"]["error_class"], "circuit_open",
        "{refused}"
    );
    assert!(
        refused["error"]["data"]["retry_after"].as_u64().is_some(),
        "{refused}"
    );
    let metrics = String::from_utf8_lossy(&app.get("/metrics").await.body).to_string();
    assert!(
        metrics.contains(&format!(
            "berth_gateway_circuit{{server_id=\"{slow}\",state=\"open\"}} 1"
        )),
        "{metrics}"
    );
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let recovered = client.call("slow__echo", json!({"text": "again"})).await;
    assert_eq!(text_of(&recovered), "again");
    let gateway = app
        .get(&format!("/api/v1/servers/{slow}/gateway"))
        .await
        .json();
    assert_eq!(gateway["circuit"], "closed", "{gateway}");
    assert!(client.tool_names().await.contains(&"slow__echo".to_owned()));

    // A crash mid-call is an error to its caller; the server is recorded as failed and
    // its tools leave the list until it runs again.
    let crashed = client.call("slow__crash", json!({})).await;
    assert_eq!(
        crashed["error"]["data"]["error_class"], "closed",
        "{crashed}"
    );
    app.until_state(&slow, "failed").await;
    let gone = client.call("slow__echo", json!({"text": "x"})).await;
    assert!(gone["error"].is_object(), "{gone}");
    app.start(&slow).await;
    app.until_state(&slow, "running").await;
    let back = client.call("slow__echo", json!({"text": "back"})).await;
    assert_eq!(text_of(&back), "back");
    client.close().await;
    other.close().await;

    // Berth restarted under a session: the session is unknown to the new Berth (404), and
    // a client that opens a new one goes on.
    let before = McpClient::connect(&url, app.token(), "legacy").await;
    app.restart_with(gateway_settings).await;
    app.until_state(&slow, "running").await;
    let mut again = McpClient::connect(&url, app.token(), "legacy").await;
    let answer = again
        .call("slow__echo", json!({"text": "after restart"}))
        .await;
    assert_eq!(text_of(&answer), "after restart");
    again.close().await;
    before.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_calls_over_one_stdio_server_each_get_their_own_answer() {
    let app = TestApp::spawn_with_processes().await;
    running_fixture(&app, "files", "stdio").await;
    let url = app.url("/mcp");
    let calls: Vec<Value> = (0..32)
        .map(|i| json!({"name": "files__echo", "arguments": {"text": format!("caller {i}")}}))
        .collect();
    let mut sessions = Vec::new();
    for _ in 0..2 {
        sessions.push(McpClient::connect(&url, app.token(), "legacy").await);
    }
    let asked = sessions.iter_mut().map(|client| {
        let calls = calls.clone();
        async move { client.ask(json!({"op": "call_many", "calls": calls})).await }
    });
    for answer in futures_util::future::join_all(asked).await {
        let results = answer["results"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"));
        assert_eq!(results.len(), 32);
        for (i, result) in results.iter().enumerate() {
            assert_eq!(text_of(result), format!("caller {i}"), "{result}");
        }
    }
    for client in sessions {
        client.close().await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_key_loses_its_session_and_a_scoped_rate_limit_answers_with_retry_after() {
    let app = TestApp::spawn_with(|c| {
        processes(c);
        c.gateway.calls_per_tool.per_second = 1;
        c.gateway.calls_per_tool.burst = 2;
    })
    .await;
    running_fixture(&app, "files", "stdio").await;
    let url = app.url("/mcp");
    let mut client = McpClient::connect(&url, app.token(), "legacy").await;
    for _ in 0..2 {
        let answer = client.call("files__echo", json!({"text": "ok"})).await;
        assert_eq!(text_of(&answer), "ok");
    }
    let limited = client
        .call("files__echo", json!({"text": "too many"}))
        .await;
    assert_eq!(limited["error"]["code"], -32029, "{limited}");
    assert!(
        limited["error"]["data"]["retry_after"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{limited}"
    );
    // Another tool has its own bucket.
    let other = client.call("files__add", json!({"a": 1, "b": 2})).await;
    assert_eq!(text_of(&other), "3");
    client.close().await;

    let ada = user(&app, "ada", "operator").await;
    let mut client = McpClient::connect(&url, &ada.key, "legacy").await;
    assert!(client.tool_names().await.is_empty());
    // A session of ada's with its notification stream open, which only ends when the
    // server ends it (keep-alives every 15 s).
    let http = reqwest::Client::new();
    let opened = http
        .post(&url)
        .bearer_auth(&ada.key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#)
        .send()
        .await
        .unwrap();
    let session = opened
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut stream = http
        .get(&url)
        .bearer_auth(&ada.key)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    app.json(
        reqwest::Method::DELETE,
        &format!("/api/v1/keys/{}", ada.key_id),
        &json!({}),
    )
    .await
    .expect(202);
    // The key's sessions end at once: the open stream is closed by the server.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "a revoked key's notification stream stayed open"
    );
    // Once the revocation is in the identity read model, no request with the key works.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app
        .send_as(&ada.key, reqwest::Method::GET, "/api/v1/me")
        .await
        .status
        != 401
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key was never revoked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = client.ask(json!({"op": "list"})).await;
    assert!(
        after["error"].is_object(),
        "a revoked key still lists: {after}"
    );
    client.close().await;
    app.stop().await;
}

/// One request of the stateless protocol revision; its JSON-RPC answer.
async fn stateless(app: &TestApp, method: &str, params: Value) -> Value {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let answer = raw(app, &body.to_string(), None, "2026-07-28").await;
    let text = answer.text().await.unwrap_or_default();
    // Answered as JSON or as one server-sent event.
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap_or(&text);
    serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Waits until `stream` (the event stream, filtered to `ServerRunning`) tells that
/// server `id` runs.
async fn until_running_event(stream: &mut reqwest::Response, seen: &mut String, id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains(id) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no ServerRunning for {id}"))
            .expect("the event stream reads")
            .expect("the event stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_the_log_shows_running_is_listed_and_callable_through_the_gateway_at_once() {
    let app = TestApp::spawn_with_processes().await;
    let entry = app
        .register(&process_fixture_entry("quick-entry", "stdio", &[]))
        .await;
    let mut stream = reqwest::Client::new()
        .get(app.url(&format!(
            "/api/v1/events/stream?event_type=ServerRunning&after={}",
            app.head().await
        )))
        .bearer_auth(app.token())
        .send()
        .await
        .expect("the event stream opens");
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    // The event stream, the servers read model and the gateway follow the log each on
    // their own; a request made the moment a client is told a server runs must find it.
    // 15 tries of two servers of three tools each: one page of `tools/list`.
    for i in 0..15 {
        let (listed, called) = (format!("listed{i}"), format!("called{i}"));
        let mut ids = Vec::new();
        for name in [&listed, &called] {
            ids.push(
                app.create_server(&json!({"catalog_id": entry, "name": name}))
                    .await,
            );
        }
        app.start(&ids[0]).await;
        until_running_event(&mut stream, &mut seen, &ids[0]).await;
        let tools = stateless(&app, "tools/list", json!({})).await;
        let names: Vec<&str> = tools["result"]["tools"]
            .as_array()
            .map(|tools| tools.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default();
        let tool = format!("{listed}__echo");
        assert!(names.contains(&tool.as_str()), "try {i}: {names:?}");
        app.start(&ids[1]).await;
        until_running_event(&mut stream, &mut seen, &ids[1]).await;
        let answer = stateless(
            &app,
            "tools/call",
            json!({"name": format!("{called}__echo"), "arguments": {"text": "at once"}}),
        )
        .await;
        assert_eq!(text_of(&answer), "at once", "try {i}");
    }
    drop(stream);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_third_party_time_server_answers_through_the_gateway() {
    let command = berth_tests::python_tools::mcp_server_time();
    let app = TestApp::spawn_with_processes().await;
    let entry = app
        .register(&json!({
            "name": "time",
            "transport": "stdio",
            "runtime": {"type": "process", "command": command.to_string_lossy(), "args": ["--local-timezone", "UTC"]}
        }))
        .await;
    let id = app
        .create_server(&json!({"catalog_id": entry, "name": "time"}))
        .await;
    app.start(&id).await;
    app.until_state(&id, "running").await;
    let mut client = McpClient::connect(&app.url("/mcp"), app.token(), "auto").await;
    assert!(client
        .tool_names()
        .await
        .contains(&"time__get_current_time".to_owned()));
    let answer = client
        .call("time__get_current_time", json!({"timezone": "UTC"}))
        .await;
    assert!(text_of(&answer).contains("UTC"), "{answer}");
    client.close().await;
    app.stop().await;
}

/// Sends one raw JSON-RPC request to `/mcp` as `token`, with `session` if given.
async fn raw(app: &TestApp, body: &str, session: Option<&str>, version: &str) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(app.url("/mcp"))
        .bearer_auth(app.token())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", version)
        .body(body.to_owned());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    // The stateless revision names the method, and the tool called, in headers too.
    let message = serde_json::from_str::<Value>(body).unwrap_or_default();
    if version == "2026-07-28" {
        if let Some(method) = message["method"].as_str() {
            request = request.header("mcp-method", method);
        }
        if let Some(tool) = message["params"]["name"].as_str() {
            request = request.header("mcp-name", tool);
        }
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_protocol_revision_is_served_and_bad_input_gets_the_specs_errors() {
    let app = TestApp::spawn_with_processes().await;
    running_fixture(&app, "files", "stdio").await;

    for version in ["2025-06-18", "2025-11-25"] {
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"{version}","capabilities":{{}},"clientInfo":{{"name":"raw","version":"0"}}}}}}"#
        );
        let answer = raw(&app, &init, None, version).await;
        assert_eq!(answer.status(), 200);
        let session = answer
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no session for {version}"));
        let body = answer.text().await.unwrap();
        assert!(
            body.contains(&format!("\"protocolVersion\":\"{version}\"")),
            "{body}"
        );
        let initialized = raw(
            &app,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            Some(&session),
            version,
        )
        .await;
        assert_eq!(initialized.status(), 202);
    }

    // Someone else's session is, to another credential, one that does not exist: not to
    // be deleted, listened to or replayed (the SDK answers GET and DELETE itself).
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
    let opened = raw(&app, init, None, "2025-06-18").await;
    let session = opened
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let eve = user(&app, "eve", "operator").await;
    let http = reqwest::Client::new();
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let stolen = http
            .request(method.clone(), app.url("/mcp"))
            .bearer_auth(&eve.key)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(stolen.status(), 404, "{method}");
    }
    let ended = http
        .delete(app.url("/mcp"))
        .bearer_auth(app.token())
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 204);

    // A session this Berth never made: 404, so clients start a new one.
    let unknown = raw(
        &app,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        Some("not-a-session"),
        "2025-06-18",
    )
    .await;
    assert_eq!(unknown.status(), 404);
    // A cursor this gateway never gave out: the spec's invalid-params error.
    let bad_cursor = raw(
        &app,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"cursor":"not a cursor!",
            "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",
                     "io.modelcontextprotocol/clientCapabilities":{}}}}"#,
        None,
        "2026-07-28",
    )
    .await;
    let body = bad_cursor.text().await.unwrap_or_default();
    assert!(body.contains("-32602") && body.contains("cursor"), "{body}");
    // Not JSON, not JSON-RPC, too large, a browser origin: refused, never a 500.
    for (body, code) in [("{not json", -32700), (r#"{"hello":"world"}"#, -32600)] {
        let answer = raw(&app, body, None, "2025-06-18").await;
        assert_eq!(answer.status(), 400, "{body}");
        let error: Value = answer.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{error}");
        assert_eq!(error["id"], Value::Null);
    }
    for (body, expected) in [(
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"pad":"{}"}}}}"#,
            "x".repeat(5 * 1024 * 1024)
        ),
        413,
    )] {
        let answer = raw(&app, &body, None, "2025-06-18").await;
        assert_eq!(answer.status(), expected, "{}", &body[..body.len().min(40)]);
    }
    let from_browser = reqwest::Client::new()
        .post(app.url("/mcp"))
        .bearer_auth(app.token())
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(from_browser.status(), 403);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(tool_calls(&app, 0).await.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_profile_serves_a_chosen_few_tools_and_a_key_scoped_to_it_reaches_nothing_else() {
    let app = TestApp::spawn_with_processes().await;
    let files = running_fixture(&app, "files", "stdio").await;
    let web = running_fixture(&app, "web", "http").await;
    let bob = user(&app, "bob", "operator").await;

    // Only the caller's own servers may be in a profile.
    let client = reqwest::Client::new();
    let stolen = client
        .put(app.url("/api/v1/profiles/mine"))
        .bearer_auth(&bob.key)
        .json(&json!({"servers": [{"server_id": files}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), 422);

    let defined = app
        .json(
            reqwest::Method::PUT,
            "/api/v1/profiles/work",
            &json!({"servers": [
                {"server_id": files, "allow": ["echo", "add"], "deny": ["add"]},
                {"server_id": web, "deny": ["env_keys"]}
            ]}),
        )
        .await;
    defined.expect(200);
    let listed = app.get("/api/v1/profiles").await.json();
    assert_eq!(listed["items"][0]["name"], "work", "{listed}");
    app.get("/api/v1/profiles/nope").await.expect_problem(404);

    let profile_url = app.url("/mcp/p/work");
    let mut client_in_profile = McpClient::connect(&profile_url, app.token(), "legacy").await;
    assert_eq!(
        client_in_profile.tool_names().await,
        ["files__echo", "web__add", "web__echo"]
    );
    let denied = client_in_profile.call("web__env_keys", json!({})).await;
    assert_eq!(denied["error"]["code"], -32602, "{denied}");
    let answer = client_in_profile
        .call("files__echo", json!({"text": "via work"}))
        .await;
    assert_eq!(text_of(&answer), "via work");

    // Changing the profile changes the list of sessions through it.
    app.json(
        reqwest::Method::PUT,
        "/api/v1/profiles/work",
        &json!({"servers": [{"server_id": web}]}),
    )
    .await
    .expect(200);
    let changed = client_in_profile
        .ask(json!({"op": "wait_list_changed", "after": 0}))
        .await;
    assert_eq!(changed["changed"], true, "{changed}");
    assert_eq!(
        client_in_profile.tool_names().await,
        ["web__add", "web__echo", "web__env_keys"]
    );
    client_in_profile.close().await;

    // A key limited to the profile works there, and nowhere else.
    let created = app
        .post(
            "/api/v1/users/{admin}/keys"
                .replace("{admin}", &admin_id(&app).await)
                .as_str(),
            &json!({"name": "agent", "profiles": ["work"]}),
        )
        .await;
    created.expect(201);
    let scoped = created.json()["key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = app
            .send_as(&scoped, reqwest::Method::GET, "/api/v1/me")
            .await;
        if seen.status == 403 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{seen}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut agent = McpClient::connect(&profile_url, &scoped, "legacy").await;
    assert_eq!(agent.tool_names().await.len(), 3);
    agent.close().await;
    for path in ["/mcp", "/mcp/p/other"] {
        let refused = client
            .post(app.url(path))
            .bearer_auth(&scoped)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{path}");
    }
    // Another user has no profile by that name.
    let none = client
        .post(app.url("/mcp/p/work"))
        .bearer_auth(&bob.key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);

    app.json(reqwest::Method::DELETE, "/api/v1/profiles/work", &json!({}))
        .await
        .expect(202);
    app.get("/api/v1/profiles/work").await.expect_problem(404);
    app.stop().await;
}

/// The administrator's user id.
async fn admin_id(app: &TestApp) -> String {
    app.get("/api/v1/me").await.json()["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stdio_server_in_docker_serves_health_checks_and_many_callers_over_its_one_attachment() {
    use berth_tests::docker::{fixture_image, require_docker, ContainerCleanup};
    if !require_docker() {
        return;
    }
    let image = fixture_image().await;
    let app = TestApp::spawn_with(|c| {
        c.drive_runtime = true;
        c.runtime = berth_api::serve::runtimes::RuntimeChoice::Docker;
        c.process_manager.probe_timeout = Duration::from_secs(8);
        c.process_manager.stop_grace = Duration::from_secs(2);
        // Health checks often, over the same session the calls use.
        c.intervals.health = Duration::from_millis(300);
    })
    .await;
    let entry = app
        .register(&json!({
            "name": "docker-fixture",
            "transport": "stdio",
            "runtime": {"type": "docker", "image": image},
        }))
        .await;
    let id = app
        .create_server(&json!({"catalog_id": entry, "name": "boxed"}))
        .await;
    let _cleanup = ContainerCleanup::new(format!("berth-{id}"));
    app.start(&id).await;
    app.until_state(&id, "running").await;

    let mut client = McpClient::connect(&app.url("/mcp"), app.token(), "auto").await;
    assert_eq!(
        client.tool_names().await,
        ["boxed__add", "boxed__echo", "boxed__env_keys"]
    );
    let calls: Vec<Value> = (0..32)
        .map(|i| json!({"name": "boxed__echo", "arguments": {"text": format!("boxed {i}")}}))
        .collect();
    for _ in 0..3 {
        let answer = client.ask(json!({"op": "call_many", "calls": calls})).await;
        let results = answer["results"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"));
        for (i, result) in results.iter().enumerate() {
            assert_eq!(text_of(result), format!("boxed {i}"), "{result}");
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // The health checks shared the attachment all along: the server stayed healthy.
    let server = app.get(&format!("/api/v1/servers/{id}")).await.json();
    assert_eq!(server["health"], "healthy", "{server}");
    client.close().await;
    app.command(&format!("/api/v1/servers/{id}/stop"))
        .await
        .expect(202);
    app.until_state(&id, "stopped").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_an_admin_shares_is_usable_by_those_it_is_shared_with_and_leaves_when_unshared() {
    use reqwest::Method;
    let app = TestApp::spawn_with_processes().await;
    let clock = running_fixture(&app, "clock", "stdio").await;
    let bob = user(&app, "bob", "viewer").await;
    let eve = user(&app, "eve", "operator").await;
    let url = app.url("/mcp");
    let sharing = format!("/api/v1/servers/{clock}/sharing");
    let put_as = |key: &str, body: Value| {
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let key = key.to_owned();
        let app = &app;
        let sharing = sharing.clone();
        async move {
            app.send(Method::PUT, &sharing, Some(body), Some(&key), &[])
                .await
        }
    };
    let mut bobs = McpClient::connect(&url, &bob.key, "legacy").await;
    let mut eves = McpClient::connect(&url, &eve.key, "legacy").await;
    assert!(bobs.tool_names().await.is_empty());

    // Bad requests and callers who may not share change nothing.
    // Named by their place in the request, whatever their order as ids.
    let unknown = put_as(
        app.token(),
        json!({"users": [bob.id, "ffffffff-ffff-4fff-8fff-ffffffffffff", eve.id,
                         "00000000-0000-4000-8000-000000000001"]}),
    )
    .await;
    unknown.expect_problem(422);
    assert_eq!(unknown.problem_fields(), ["users[1]", "users[3]"]);
    put_as(app.token(), json!({"users": "bob"}))
        .await
        .expect_problem(400);
    put_as(&eve.key, json!({"everyone": true}))
        .await
        .expect_problem(404);
    put_as(&bob.key, json!({"everyone": true}))
        .await
        .expect_problem(404);
    // An operator may not share even a server of their own.
    let entry = app
        .register(&process_fixture_entry("eves-entry", "stdio", &[]))
        .await;
    app.command(&format!("/api/v1/catalog/{entry}/publish"))
        .await
        .expect(202);
    let created = app
        .send(
            Method::POST,
            "/api/v1/servers",
            Some(serde_json::to_vec(&json!({"catalog_id": entry, "name": "own"})).unwrap()),
            Some(&eve.key),
            &[],
        )
        .await;
    created.expect(201);
    app.send(
        Method::PUT,
        &format!("/api/v1/servers/{}/sharing", created.id()),
        Some(br#"{"everyone": true}"#.to_vec()),
        Some(&eve.key),
        &[],
    )
    .await
    .expect_problem(403);
    assert!(bobs.tool_names().await.is_empty());

    // Shared with bob: his open session is told, and he calls it as himself.
    let shared = put_as(app.token(), json!({"users": [bob.id]})).await;
    shared.expect(200);
    let changed = bobs
        .ask(json!({"op": "wait_list_changed", "after": 0}))
        .await;
    assert_eq!(changed["changed"], true, "{changed}");
    assert_eq!(
        bobs.tool_names().await,
        ["clock__add", "clock__echo", "clock__env_keys"]
    );
    let answer = bobs.call("clock__echo", json!({"text": "for bob"})).await;
    assert_eq!(text_of(&answer), "for bob", "{answer}");
    // Eve still sees nothing of it, and cannot call it by its name.
    assert!(eves.tool_names().await.is_empty());
    let refused = eves.call("clock__echo", json!({"text": "x"})).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    // Sharing lends the tools, not the server: bob does not see it in the API.
    app.send_as(&bob.key, Method::GET, &format!("/api/v1/servers/{clock}"))
        .await
        .expect_problem(404);
    let view = app.get(&format!("/api/v1/servers/{clock}")).await;
    assert_eq!(view.json()["sharing"]["users"], json!([bob.id]), "{view:?}");
    // The call is bob's, in the audit trail and in the server's calls.
    let calls = tool_calls(&app, 1).await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0]["actor"], "user:bob", "{calls:#?}");
    let listed = app
        .get(&format!(
            "/api/v1/servers/{clock}/calls?caller=user:bob&min_position={}",
            app.head().await
        ))
        .await;
    assert_eq!(listed.json()["items"].as_array().map(Vec::len), Some(1));

    // With everyone: eve too.
    put_as(app.token(), json!({"everyone": true}))
        .await
        .expect(200);
    let changed = eves
        .ask(json!({"op": "wait_list_changed", "after": 0}))
        .await;
    assert_eq!(changed["changed"], true, "{changed}");
    assert_eq!(eves.tool_names().await.len(), 3);

    // Unshared: bob's session loses it at once, and so do his calls.
    let count = bobs
        .ask(json!({"op": "wait_list_changed", "after": 0}))
        .await["count"]
        .as_u64()
        .unwrap_or(0);
    put_as(app.token(), json!({})).await.expect(200);
    let changed = bobs
        .ask(json!({"op": "wait_list_changed", "after": count}))
        .await;
    assert_eq!(changed["changed"], true, "{changed}");
    assert!(bobs.tool_names().await.is_empty());
    let gone = bobs.call("clock__echo", json!({"text": "x"})).await;
    assert_eq!(gone["error"]["code"], -32602, "{gone}");
    let audit = app
        .get(&format!(
            "/api/v1/audit?action=server.sharing_changed&server_id={clock}&min_position={}",
            app.head().await
        ))
        .await;
    assert_eq!(
        audit.json()["items"].as_array().map(Vec::len),
        Some(3),
        "{audit:?}"
    );
    bobs.close().await;
    eves.close().await;
    app.stop().await;
}

/// The ids of the calls recorded of server `server_id`, newest first.
async fn call_ids(app: &TestApp, server_id: &str, count: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = app.get(&format!("/api/v1/servers/{server_id}/calls")).await;
        page.expect(200);
        let ids: Vec<String> = page.json()["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect();
        if ids.len() >= count || tokio::time::Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_that_keeps_arguments_seals_them_for_the_caller_alone_and_forgetting_them_shreds_them(
) {
    use reqwest::Method;
    let app = TestApp::spawn_with_processes().await;
    let plain = running_fixture(&app, "plain", "stdio").await;
    let mut entry = process_fixture_entry("kept-entry", "stdio", &[]);
    entry["gateway"] = json!({"keep_arguments": true});
    let kept = running_server(&app, &entry, json!({"name": "kept"})).await;
    let bob = user(&app, "bob", "viewer").await;
    let eve = user(&app, "eve", "operator").await;
    let (mut bobs, _) = session_shared_with(&app, &kept, &bob).await;
    let mut admins = McpClient::connect(&app.url("/mcp"), app.token(), "legacy").await;
    let said = "the word is swordfish";
    let answer = bobs.call("kept__echo", json!({"text": said})).await;
    assert_eq!(text_of(&answer), said, "{answer}");
    let answer = admins.call("plain__echo", json!({"text": said})).await;
    assert_eq!(text_of(&answer), said, "{answer}");
    bobs.close().await;
    admins.close().await;

    // Kept: the caller reads them back; so does an administrator; nobody else.
    let bobs_call = call_ids(&app, &kept, 1).await.remove(0);
    let path = format!("/api/v1/calls/{bobs_call}");
    let read = app.send_as(&bob.key, Method::GET, &path).await;
    read.expect(200);
    assert_eq!(read.json()["arguments_kept"], "kept", "{read:?}");
    assert_eq!(read.json()["arguments"], json!({"text": said}), "{read:?}");
    assert_eq!(read.json()["caller"], "user:bob");
    assert_eq!(app.get(&path).await.json()["arguments"]["text"], said);
    app.send_as(&eve.key, Method::GET, &path)
        .await
        .expect_problem(404);
    app.send_as(
        &bob.key,
        Method::GET,
        &format!("/api/v1/calls/{}", api_support::uuid()),
    )
    .await
    .expect_problem(404);
    // Not kept: the digest and size only.
    let admins_call = call_ids(&app, &plain, 1).await.remove(0);
    let read = app.get(&format!("/api/v1/calls/{admins_call}")).await;
    assert_eq!(read.json()["arguments_kept"], "not_kept", "{read:?}");
    assert_eq!(read.json()["arguments"], Value::Null);
    // Neither is in the log, the read models or any answer in plaintext.
    let sql = app.sql().await;
    for row in sql
        .query(
            "SELECT payload::text FROM events WHERE aggregate_type = 'tool' \
             UNION ALL SELECT to_jsonb(t)::text FROM tool_calls t \
             UNION ALL SELECT to_jsonb(a)::text FROM audit_log a",
            &[],
        )
        .await
        .expect("reading the log")
    {
        let text: String = row.get(0);
        assert!(!text.contains("swordfish"), "{text}");
    }

    // Forgetting bob shreds what was kept of his calls, nothing else.
    let settings = berth_api::cli::config::Settings {
        data_dir: app.data_dir().to_owned(),
        database_url: Some(app.db.url()),
        ..Default::default()
    };
    berth_api::cli::keys::forget_user(&settings, "bob")
        .await
        .expect("forgetting bob");
    let read = app.get(&path).await;
    read.expect(200);
    assert_eq!(read.json()["arguments_kept"], "shredded", "{read:?}");
    assert_eq!(read.json()["arguments"], Value::Null);
    assert_eq!(read.json()["arguments_bytes"], said.len() + 11);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_servers_own_secrets_are_taken_out_of_what_it_answers_through_the_gateway() {
    use base64::Engine;
    let app = TestApp::spawn_with_processes().await;
    let mut entry = process_fixture_entry("leaky-entry", "stdio", &["FIXTURE_EXTRA_TOOLS"]);
    entry["config_schema"]
        .as_array_mut()
        .expect("a schema")
        .push(json!({"key": "TOKEN", "required": true, "secret": true}));
    let secret = "tok-9f8e7d6c5b4a3210";
    let leaky = running_server(
        &app,
        &entry,
        json!({
            "name": "leaky",
            "config": {"FIXTURE_EXTRA_TOOLS": "1"},
            "secrets": {"TOKEN": secret}
        }),
    )
    .await;
    let bob = user(&app, "bob", "viewer").await;
    let (mut bobs, _) = session_shared_with(&app, &leaky, &bob).await;

    // The server says its secret; bob, whom it is shared with, never reads it.
    let answer = bobs
        .call("leaky__env_value", json!({"name": "TOKEN"}))
        .await;
    assert_eq!(text_of(&answer), "TOKEN=[redacted]", "{answer}");
    assert_eq!(
        answer["result"]["structuredContent"]["value"], "[redacted]",
        "{answer}"
    );
    // Nor an encoded form of it.
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("bob:{secret}"));
    let answer = bobs
        .call("leaky__echo", json!({"text": format!("Basic {encoded}")}))
        .await;
    assert!(!answer.to_string().contains(&encoded[8..]), "{answer}");
    assert!(text_of(&answer).contains("[redacted]"), "{answer}");
    // Nor in what it says of its progress.
    let answer = bobs
        .ask(json!({"op": "call", "name": "leaky__sleep",
                    "arguments": {"ms": 300, "say": "TOKEN"}, "progress": true}))
        .await;
    assert_eq!(
        answer["messages"],
        json!([
            "step 1: [redacted]",
            "step 2: [redacted]",
            "step 3: [redacted]"
        ]),
        "{answer}"
    );
    // What holds no secret comes through as it was.
    let answer = bobs.call("leaky__echo", json!({"text": "plain"})).await;
    assert_eq!(text_of(&answer), "plain", "{answer}");
    bobs.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resources_and_prompts_listed_or_read_count_against_the_keys_limit_as_calls_do() {
    let app = TestApp::spawn_with(|c| {
        processes(c);
        c.gateway.calls_per_key.per_second = 1;
        c.gateway.calls_per_key.burst = 3;
    })
    .await;
    let files = running_fixture(&app, "files", "stdio").await;
    let mut client = McpClient::connect(&app.url("/mcp"), app.token(), "legacy").await;
    let uri = format!("berth://server/{files}/fixture://greeting");
    let listed = client.ask(json!({"op": "list_resources"})).await;
    assert!(listed["resources"].is_array(), "{listed}");
    let read = client.ask(json!({"op": "read_resource", "uri": uri})).await;
    assert!(read["contents"].is_array(), "{read}");
    let prompt = client
        .ask(json!({"op": "get_prompt", "name": "files__greet", "arguments": {"who": "Ada"}}))
        .await;
    assert!(prompt["messages"].is_array(), "{prompt}");
    // The key's bucket is empty now: reads, prompts and calls alike wait.
    let read = client.ask(json!({"op": "read_resource", "uri": uri})).await;
    assert_eq!(read["error"]["code"], -32029, "{read}");
    assert!(
        read["error"]["data"]["retry_after"].as_u64().unwrap_or(0) >= 1,
        "{read}"
    );
    let prompts = client.ask(json!({"op": "list_prompts"})).await;
    assert_eq!(prompts["error"]["code"], -32029, "{prompts}");
    let call = client.call("files__echo", json!({"text": "x"})).await;
    assert_eq!(call["error"]["code"], -32029, "{call}");
    client.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_whose_secrets_cannot_be_read_leaves_the_gateway_rather_than_keep_an_old_sharing()
{
    let app = TestApp::spawn_with_processes().await;
    let mut entry = process_fixture_entry("vault-entry", "stdio", &[]);
    entry["config_schema"] = json!([{"key": "TOKEN", "required": true, "secret": true}]);
    let vault = running_server(
        &app,
        &entry,
        json!({
            "name": "vault", "secrets": {"TOKEN": "vault-token-0042"}
        }),
    )
    .await;
    let bob = user(&app, "bob", "viewer").await;
    let sharing = format!("/api/v1/servers/{vault}/sharing");
    let (mut bobs, count) = session_shared_with(&app, &vault, &bob).await;
    assert_eq!(bobs.tool_names().await.len(), 3);

    // The owner's data key is damaged: the server's secrets cannot be read any more, so
    // neither can the change that takes bob's access away be applied with them.
    app.sql()
        .await
        .execute(
            "UPDATE owner_data_keys SET wrapped_key = decode(repeat('00', 48), 'hex') \
             WHERE owner = 'user:admin'",
            &[],
        )
        .await
        .expect("damaging the data key");
    app.json(reqwest::Method::PUT, &sharing, &json!({}))
        .await
        .expect(200);
    let changed = bobs
        .ask(json!({"op": "wait_list_changed", "after": count, "timeout": 10}))
        .await;
    assert_eq!(changed["changed"], true, "{changed}");
    assert!(bobs.tool_names().await.is_empty());
    let refused = bobs.call("vault__echo", json!({"text": "x"})).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    bobs.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_owner_of_a_shared_server_lists_its_calls_but_reads_no_one_elses_arguments() {
    use reqwest::Method;
    let app = TestApp::spawn_with_processes().await;
    let mut entry = process_fixture_entry("kept-entry", "stdio", &[]);
    entry["gateway"] = json!({"keep_arguments": true});
    let entry = app.register(&entry).await;
    app.command(&format!("/api/v1/catalog/{entry}/publish"))
        .await
        .expect(202);
    let ann = user(&app, "ann", "operator").await;
    let bob = user(&app, "bob", "viewer").await;
    let body = serde_json::to_vec(&json!({"catalog_id": entry, "name": "notes"})).unwrap();
    let created = app
        .send(
            Method::POST,
            "/api/v1/servers",
            Some(body),
            Some(&ann.key),
            &[],
        )
        .await;
    created.expect(201);
    let notes = created.id();
    app.start(&notes).await;
    app.until_state(&notes, "running").await;
    let (mut bobs, _) = session_shared_with(&app, &notes, &bob).await;
    let answer = bobs
        .call("notes__echo", json!({"text": "bob's own words"}))
        .await;
    assert_eq!(text_of(&answer), "bob's own words", "{answer}");
    bobs.close().await;

    // Ann sees that bob called her server, and how it went...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let call = loop {
        let listed = app
            .send_as(
                &ann.key,
                Method::GET,
                &format!("/api/v1/servers/{notes}/calls"),
            )
            .await;
        listed.expect(200);
        if let Some(call) = listed.json()["items"].get(0).cloned() {
            break call;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never showed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(call["caller"], "user:bob", "{call}");
    // ...but not what he sent: that is his, and the administrators'.
    let path = format!("/api/v1/calls/{}", call["id"].as_str().unwrap_or_default());
    app.send_as(&ann.key, Method::GET, &path)
        .await
        .expect_problem(404);
    let his = app.send_as(&bob.key, Method::GET, &path).await;
    assert_eq!(
        his.json()["arguments"]["text"],
        "bob's own words",
        "{his:?}"
    );
    assert_eq!(app.get(&path).await.json()["arguments_kept"], "kept");
    app.stop().await;
}
