//! The same lifecycle without Docker: the process runtime runs the fixture MCP server as a
//! local child process, through the real HTTP API and a real PostgreSQL.

mod api_support;

use std::time::{Duration, Instant};

use api_support::{process_fixture_entry, TestApp};
use berth_tests::docker::fixture_binary;
use serde_json::json;

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// The process the runtime started for `server_id`: it runs in its own home directory,
/// `<data_dir>/process-logs/home/<server id>`.
fn process_of(server_id: &str) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            cwd.ends_with(format!("home/{server_id}")).then_some(pid)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_local_process_server_runs_answers_and_stops() {
    let binary = fixture_binary();
    let app = TestApp::spawn_with_processes().await;
    let entry = app
        .post(
            "/api/v1/catalog",
            &json!({
                "name": "local-fixture",
                "transport": "stdio",
                "runtime": {"type": "process", "command": binary.to_string_lossy()},
                "config_schema": [
                    {"key": "FIXTURE_TOKEN", "required": true, "secret": true},
                    {"key": "FIXTURE_EXIT_IMMEDIATELY", "required": false, "secret": false}
                ]
            }),
        )
        .await
        .expect(201)
        .id();
    let id = app
        .post(
            "/api/v1/servers",
            &json!({"catalog_id": entry, "name": "local", "secrets": {"FIXTURE_TOKEN": "process-secret-value"}}),
        )
        .await
        .expect(201)
        .id();
    app.command(&format!("/api/v1/servers/{id}/start"))
        .await
        .expect(202);
    let running = app.until_state(&id, "running").await;
    assert!(running["container_id"].is_string(), "{running}");
    let pid = process_of(&id).unwrap_or_else(|| panic!("no process runs for {id}"));
    assert!(alive(pid), "the process really runs");

    let test = app
        .command(&format!("/api/v1/servers/{id}/test"))
        .await
        .json();
    assert_eq!(test["ok"], true, "{test}");
    assert!(test["tools"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "echo"));
    let log_file = app.data_dir().join(format!("process-logs/{id}.log"));
    let mode = std::fs::metadata(&log_file)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
        .unwrap_or_else(|e| panic!("{}: {e}", log_file.display()));
    assert_eq!(mode & 0o777, 0o600, "the log file is Berth's alone");
    let logs = app.get(&format!("/api/v1/servers/{id}/logs?tail=10")).await;
    assert!(
        String::from_utf8_lossy(&logs.body).contains("serving MCP"),
        "{logs}"
    );

    app.command(&format!("/api/v1/servers/{id}/stop"))
        .await
        .expect(202);
    app.until_state(&id, "stopped").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "the process is gone after stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A command that exits at once fails with its code and output.
    let bad = app
        .post(
            "/api/v1/servers",
            &json!({"catalog_id": entry, "name": "bad", "config": {"FIXTURE_EXIT_IMMEDIATELY": "1"}, "secrets": {"FIXTURE_TOKEN": "x"}}),
        )
        .await
        .expect(201)
        .id();
    app.command(&format!("/api/v1/servers/{bad}/start"))
        .await
        .expect(202);
    let failed = app.until_state(&bad, "failed").await;
    let error = failed["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("exiting at start as asked"), "{error}");
    app.stop().await;
}

/// Tools are recorded with their input schemas, and an `http` server's address is in the
/// API while it runs (and answers MCP there), gone once it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http_server_publishes_its_address_and_its_tools_their_schemas() {
    let app = TestApp::spawn_with_processes().await;
    let entry = app
        .register(&process_fixture_entry("local-http", "http", &[]))
        .await;
    let id = app
        .create_server(&json!({"catalog_id": entry, "name": "over-http"}))
        .await;
    app.start(&id).await;
    let running = app.until_state(&id, "running").await;
    let echo = running["tools"]
        .as_array()
        .and_then(|tools| tools.iter().find(|t| t["name"] == "echo"))
        .unwrap_or_else(|| panic!("no echo tool: {running:#}"));
    assert_eq!(
        echo["input_schema"]["properties"]["text"]["type"], "string",
        "{echo}"
    );
    assert_eq!(echo["input_schema"]["required"], json!(["text"]), "{echo}");

    let endpoint = running["endpoint"]
        .as_str()
        .unwrap_or_else(|| panic!("no endpoint: {running:#}"));
    assert!(
        endpoint.starts_with("http://127.0.0.1:") && endpoint.ends_with("/mcp"),
        "{endpoint}"
    );
    let answer = reqwest::Client::new()
        .post(endpoint)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "berth-test", "version": "0"}}
        }))
        .send()
        .await
        .expect("the published address answers");
    assert!(answer.status().is_success(), "{answer:?}");
    let body = answer.text().await.unwrap_or_default();
    assert!(body.contains("protocolVersion"), "{body}");
    let audit = app
        .get(&format!(
            "/api/v1/audit?server_id={id}&action=server.endpoint_published"
        ))
        .await
        .json();
    assert_eq!(audit["total"], 1, "{audit}");

    app.command(&format!("/api/v1/servers/{id}/stop"))
        .await
        .expect(202);
    let stopped = app.until_state(&id, "stopped").await;
    assert!(stopped["endpoint"].is_null(), "{stopped:#}");
    // A stopped server's output: a problem saying there is none, not an empty 200.
    for query in ["tail=10", "follow=true"] {
        let logs = app.get(&format!("/api/v1/servers/{id}/logs?{query}")).await;
        logs.expect_problem(409);
        let detail = logs.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            detail.contains("stopped") && detail.contains("no output"),
            "{detail}"
        );
    }
    app.stop().await;
}

/// A real third-party MCP server, the reference time server from PyPI, runs as a
/// `process` entry: Berth starts it (as a user of its own when root), completes the
/// handshake, records its tools with their input schemas, and its test answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_third_party_python_server_runs_as_a_process_entry() {
    let command = berth_tests::python_tools::mcp_server_time();
    let app = TestApp::spawn_with_processes().await;
    let entry = app
        .register(&json!({
            "name": "time",
            "transport": "stdio",
            "runtime": {
                "type": "process",
                "command": command.to_string_lossy(),
                "args": ["--local-timezone", "UTC"]
            }
        }))
        .await;
    let id = app
        .create_server(&json!({"catalog_id": entry, "name": "time-1"}))
        .await;
    app.start(&id).await;
    let running = app.until_state(&id, "running").await;
    let current_time = running["tools"]
        .as_array()
        .and_then(|tools| tools.iter().find(|t| t["name"] == "get_current_time"))
        .unwrap_or_else(|| panic!("no get_current_time: {running:#}"));
    assert_eq!(
        current_time["input_schema"]["properties"]["timezone"]["type"], "string",
        "{current_time}"
    );
    let test = app
        .command(&format!("/api/v1/servers/{id}/test"))
        .await
        .json();
    assert_eq!(test["ok"], true, "{test}");
    assert!(
        test["tools"]
            .as_array()
            .is_some_and(|tools| tools.iter().any(|t| t["name"] == "convert_time")),
        "{test}"
    );
    app.command(&format!("/api/v1/servers/{id}/stop"))
        .await
        .expect(202);
    app.until_state(&id, "stopped").await;
    app.stop().await;
}
