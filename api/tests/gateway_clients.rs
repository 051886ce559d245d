//! The gateway's client tooling, the built binary against a running `berth serve`:
//! `berth clients config` prints a snippet whose URL and fresh key work (limited to the
//! profile asked for), and `berth mcp connect` carries MCP between a stdio client (the
//! official Python SDK's) and the gateway.

#[allow(dead_code)]
mod cli_support;

use std::os::unix::fs::PermissionsExt;

use berth_tests::mcp_client::McpClient;
use cli_support::{data_dir, ok, Serve};
use serde_json::{json, Value};

async fn running_fixture(serve: &Serve, name: &str) -> String {
    let entry = serve
        .post(
            "/api/v1/catalog",
            json!({
                "name": format!("{name}-entry"),
                "transport": "stdio",
                "runtime": {"type": "process", "command": berth_tests::docker::fixture_binary().to_string_lossy()}
            }),
        )
        .await["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    serve
        .running(json!({"catalog_id": entry, "name": name}))
        .await
}

fn text_of(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {answer}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_configured_by_berth_reaches_its_profile_over_http_and_over_stdio() {
    let (_dir, data) = data_dir("gateway-clients");
    let serve = Serve::start(&data, &["--runtime", "process"]);
    let files = running_fixture(&serve, "files").await;
    serve
        .json(
            reqwest::Method::PUT,
            "/api/v1/profiles/work",
            json!({"servers": [{"server_id": files, "allow": ["echo"]}]}),
        )
        .await;

    // VS Code: the gateway's URL for the profile, and a fresh key limited to it.
    let snippet: Value = serde_json::from_str(&ok(
        &data,
        &["clients", "config", "vscode", "--profile", "work"],
    ))
    .expect("the snippet is JSON");
    let server = &snippet["servers"]["berth"];
    assert_eq!(server["type"], "http", "{snippet}");
    let url = server["url"].as_str().unwrap_or_default();
    assert_eq!(url, format!("{}/mcp/p/work", serve.base_url()));
    let key = server["headers"]["Authorization"]
        .as_str()
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_else(|| panic!("{snippet}"));
    let mut client = McpClient::connect(url, key, "legacy").await;
    assert_eq!(client.tool_names().await, ["files__echo"]);
    let answer = client
        .call("files__echo", json!({"text": "from vs code"}))
        .await;
    assert_eq!(text_of(&answer), "from vs code");
    client.close().await;
    let refused = reqwest::Client::new()
        .get(format!("{}/api/v1/me", serve.base_url()))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        403,
        "a profile key is for the gateway only"
    );

    // Claude Desktop: `berth mcp connect` with a key file only its owner may read.
    let snippet: Value = serde_json::from_str(&ok(&data, &["clients", "config", "claude-desktop"]))
        .expect("the snippet is JSON");
    let server = &snippet["mcpServers"]["berth"];
    let mut command = vec![server["command"].as_str().unwrap_or_default().to_owned()];
    command.extend(
        server["args"]
            .as_array()
            .unwrap_or_else(|| panic!("{snippet}"))
            .iter()
            .map(|a| a.as_str().unwrap_or_default().to_owned()),
    );
    let key_file = command
        .iter()
        .skip_while(|a| *a != "--key-file")
        .nth(1)
        .unwrap_or_else(|| panic!("no key file in {snippet}"));
    let mode = std::fs::metadata(key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{key_file}");
    let stdio = format!("stdio:{}", serde_json::to_string(&command).unwrap());
    let mut client = McpClient::connect(&stdio, "unused", "legacy").await;
    assert_eq!(
        client.tool_names().await,
        ["files__add", "files__echo", "files__env_keys"]
    );
    let answer = client.call("files__add", json!({"a": 20, "b": 22})).await;
    assert_eq!(text_of(&answer), "42");
    client.close().await;

    // Both calls are in the audit trail as the administrator's.
    let calls = serve
        .get_json(&format!("/api/v1/servers/{files}/calls"))
        .await;
    assert_eq!(calls["total"], 2, "{calls}");
    serve.stop();
}
