//! Remote MCP servers: catalog entries for servers someone else runs, reached at their
//! URL with their credential, only at addresses the administrator allows.

mod api_support;

use api_support::{processes, spawn_trusting, tool_names, TestApp};
use berth_tests::http_fixture::HttpFixture;
use berth_tests::mcp_client::McpClient;
use berth_tests::tls_proxy::TlsProxy;
use serde_json::{json, Value};

const TOKEN: &str = "s3cret-remote-token";

/// An entry for the remote server at `url`, which wants a bearer token (secret `TOKEN`).
fn remote_entry(name: &str, url: &str) -> Value {
    json!({
        "name": name,
        "description": "a server someone else runs",
        "transport": "http",
        "runtime": {"type": "remote", "url": url, "auth": {"type": "bearer", "secret": "TOKEN"}},
        "config_schema": [{"key": "TOKEN", "secret": true, "required": true}]
    })
}

/// Registers `entry`, creates server `name` of it with `token` and starts it.
async fn started(app: &TestApp, entry: &Value, name: &str, token: &str) -> String {
    let catalog_id = app.register(entry).await;
    let id = app
        .create_server(
            &json!({"catalog_id": catalog_id, "name": name, "secrets": {"TOKEN": token}}),
        )
        .await;
    app.start(&id).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_remote_server_is_reached_with_its_token_and_serves_the_gateway() {
    let fixture = HttpFixture::start(Some(TOKEN)).await;
    let front = TlsProxy::start(fixture.port).await;
    let (app, _ca) = spawn_trusting(front.ca_pem()).await;

    let id = started(&app, &remote_entry("far", &fixture.url()), "far", TOKEN).await;
    let server = app.until_state(&id, "running").await;
    let tools = tool_names(&server);
    assert_eq!(tools, ["echo", "add", "env_keys"], "{server}");
    // Its URL is the entry's: nothing is published for it.
    assert_eq!(server["endpoint"], Value::Null, "{server}");

    // Over HTTPS, through a front whose authority Berth was told to trust.
    let secure_url = format!("{}/mcp", front.url());
    let secure = started(
        &app,
        &remote_entry("far-tls", &secure_url),
        "far-tls",
        TOKEN,
    )
    .await;
    app.until_state(&secure, "running").await;

    let mut client = McpClient::connect(&app.url("/mcp"), app.token(), "legacy").await;
    for tool in ["far__echo", "far-tls__echo"] {
        let answer = client.call(tool, json!({"text": "from afar"})).await;
        assert_eq!(
            answer["result"]["content"][0]["text"], "from afar",
            "{tool}: {answer}"
        );
    }
    client.close().await;

    // A wrong token: the server answers 401 and the start fails, saying so.
    let refused = started(
        &app,
        &remote_entry("far-wrong", &fixture.url()),
        "far-wrong",
        "wrong",
    )
    .await;
    let server = app.until_state(&refused, "failed").await;
    assert!(
        server["last_error"].as_str().unwrap_or("").contains("401"),
        "{server}"
    );
    // The token is a secret: in no event, read model or answer.
    let leaked: i64 = app
        .sql()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE payload::text LIKE $1 OR metadata::text LIKE $1",
            &[&format!("%{TOKEN}%")],
        )
        .await
        .expect("reading the events")
        .get(0);
    assert_eq!(leaked, 0);
    let listed = app.get("/api/v1/servers").await;
    assert!(!String::from_utf8_lossy(&listed.body).contains(TOKEN));
    app.stop().await;
}

#[tokio::test]
async fn a_remote_server_at_an_address_the_administrator_has_not_allowed_never_runs() {
    let fixture = HttpFixture::start(None).await;
    // Processes, but no network beyond the public internet.
    let app = TestApp::spawn_with(processes).await;
    // By address, and by a name that resolves to it (checked at connection).
    let by_name = format!("http://localhost:{}/mcp", fixture.port);
    for (name, url) in [("inside", fixture.url()), ("inside-by-name", by_name)] {
        let id = started(&app, &remote_entry(name, &url), name, TOKEN).await;
        let server = app.until_state(&id, "failed").await;
        assert!(
            server["last_error"]
                .as_str()
                .unwrap_or("")
                .contains("not a public address"),
            "{name}: {server}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_remote_entry_that_cannot_be_reached_as_written_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let good = remote_entry("far", "https://mcp.example.com/mcp");
    let mut stdio = good.clone();
    stdio["transport"] = json!("stdio");
    let mut no_url = good.clone();
    no_url["runtime"]["url"] = json!("ftp://mcp.example.com");
    let mut unknown_key = good.clone();
    unknown_key["runtime"]["auth"]["secret"] = json!("NOT_IN_SCHEMA");
    let mut plain_key = good.clone();
    plain_key["config_schema"][0]["secret"] = json!(false);
    // A credential in the URL would be logged with it.
    let mut userinfo = good.clone();
    userinfo["runtime"]["url"] = json!("https://me:pw@mcp.example.com/mcp");
    let mut query = good.clone();
    query["runtime"]["auth"] = json!({"type": "query", "name": "key", "secret": "TOKEN"});
    // Headers the MCP transport sets itself.
    let mut transport_header = good.clone();
    transport_header["runtime"]["auth"] =
        json!({"type": "header", "name": "Mcp-Session-Id", "secret": "TOKEN"});
    for (entry, field) in [
        (stdio, "transport"),
        (no_url, "runtime.url"),
        (unknown_key, "runtime.auth.secret"),
        (plain_key, "runtime.auth.secret"),
        (userinfo, "runtime.url"),
        (query, "runtime.auth.type"),
        (transport_header, "runtime.auth.name"),
    ] {
        let answer = app
            .json(reqwest::Method::POST, "/api/v1/catalog", &entry)
            .await;
        answer.expect(422);
        let fields = answer.problem_fields();
        assert!(fields.iter().any(|f| f == field), "{field}: {fields:?}");
    }
    let catalog = app.get("/api/v1/catalog?kind=custom").await.json();
    assert_eq!(catalog["total"], 0, "{catalog}");
    app.stop().await;
}
