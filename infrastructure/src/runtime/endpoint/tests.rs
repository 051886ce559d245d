//! The runtime against a small HTTP API on loopback, through Berth's own MCP client.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_application::runtime::{ContainerRuntime, InstanceState, LaunchSpec, McpEndpoint};
use berth_domain::catalog::openapi::ApiAuth;
use berth_domain::catalog::{Resources, RuntimeSpec, Transport};
use rmcp::model::CallToolRequestParams;
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uuid::Uuid;

use super::address::AddressPolicy;
use super::{EndpointRuntime, EndpointSettings};
use crate::mcp::{HttpClients, Upstream};

/// An API on loopback: `/health`, `/pets/{id}` (needs `X-Key: k3y`), and 404 for the rest.
async fn api() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let port = listener.local_addr().expect("an address").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).to_string();
                let target = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                if target.starts_with("/drop") {
                    // Hangs up without an answer: the client's error names the URL.
                    return;
                }
                let keyed = text.to_ascii_lowercase().contains("x-key: k3y");
                let (status, body) = match target.as_str() {
                    "/health" => ("200 OK", json!({"ok": true})),
                    t if t.starts_with("/pets/") && keyed => (
                        "200 OK",
                        json!({"id": t.trim_start_matches("/pets/"), "name": "rex"}),
                    ),
                    t if t.starts_with("/pets/") => {
                        ("401 Unauthorized", json!({"error": "no key"}))
                    }
                    _ => ("404 Not Found", json!({"error": "no such thing"})),
                };
                let body = body.to_string();
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {"title": "pets", "version": "1"},
        "paths": {
            "/pets/{id}": {"get": {"operationId": "getPet", "summary": "One pet",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "ok"}}}},
            "/nothing": {"get": {"operationId": "getNothing", "responses": {"200": {"description": "ok"}}}},
            "/drop": {"get": {"operationId": "dropIt", "responses": {"200": {"description": "never"}}}}
        }
    })
}

fn spec(base_url: String) -> LaunchSpec {
    LaunchSpec {
        server_id: Uuid::new_v4(),
        owner: "user:ann".into(),
        name: "pets".into(),
        transport: Transport::Stdio,
        runtime: RuntimeSpec::OpenApi {
            document: document(),
            base_url,
            auth: ApiAuth::Header {
                name: "X-Key".into(),
                secret: "KEY".into(),
            },
            health_path: "/health".into(),
            operations: Vec::new(),
        },
        env: BTreeMap::from([("KEY".to_owned(), SecretString::from("k3y".to_owned()))]),
        resources: Resources::default(),
    }
}

fn loopback_allowed() -> EndpointSettings {
    EndpointSettings {
        addresses: AddressPolicy::parse(&["127.0.0.1/32".into()]).expect("a network"),
        ..EndpointSettings::default()
    }
}

async fn call(
    upstream: &Upstream,
    name: &'static str,
    arguments: Value,
) -> rmcp::model::CallToolResult {
    let params = CallToolRequestParams::new(name)
        .with_arguments(arguments.as_object().cloned().unwrap_or_default());
    upstream
        .call_tool(params, Duration::from_secs(5), None, std::future::pending())
        .await
        .expect("a result")
}

fn text(result: &rmcp::model::CallToolResult) -> String {
    serde_json::to_value(&result.content).expect("content serialises")[0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_registered_api_runs_lists_its_operations_and_answers_calls() {
    let port = api().await;
    let runtime = EndpointRuntime::new(loopback_allowed()).expect("a runtime");
    let spec = spec(format!("http://127.0.0.1:{port}"));
    let id = spec.server_id;
    let instance = runtime.create(&spec).await.expect("created");
    assert!(runtime.made_by_this_run(&instance));
    runtime.start(id).await.expect("the health check answers");
    let status = runtime
        .inspect(id)
        .await
        .expect("inspected")
        .expect("present");
    assert_eq!(status.state, InstanceState::Running);

    let endpoint = runtime
        .connect(id, Transport::Stdio)
        .await
        .expect("connected");
    assert!(matches!(endpoint, McpEndpoint::Stdio(_)));
    let upstream = Upstream::open(endpoint, Duration::from_secs(5), &HttpClients::default())
        .await
        .expect("initialize");
    let tools = upstream
        .tools(Duration::from_secs(5))
        .await
        .expect("tools/list");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    // In the document's order, which depends on how the build keeps JSON maps.
    names.sort_unstable();
    assert_eq!(names, ["dropIt", "getNothing", "getPet"]);

    let pet = call(&upstream, "getPet", json!({"id": 7})).await;
    assert_eq!(pet.is_error, Some(false));
    assert_eq!(
        serde_json::from_str::<Value>(&text(&pet)).ok(),
        Some(json!({"id": "7", "name": "rex"}))
    );

    let missing = call(&upstream, "getNothing", json!({})).await;
    assert_eq!(missing.is_error, Some(true));
    assert!(
        text(&missing).starts_with("HTTP 404 Not Found"),
        "{}",
        text(&missing)
    );

    let without = call(&upstream, "getPet", json!({})).await;
    assert_eq!(without.is_error, Some(true));
    assert!(text(&without).contains("`id`"), "{}", text(&without));

    // One line per call, and never the credential.
    let logs = runtime.logs(id, 10).await.expect("logs");
    assert!(
        logs.iter().any(|l| l.starts_with("GET /pets/{id} -> 200")),
        "{logs:?}"
    );
    assert!(!logs.iter().any(|l| l.contains("k3y")), "{logs:?}");

    runtime
        .stop(id, Duration::from_secs(1))
        .await
        .expect("stopped");
    assert!(runtime.connect(id, Transport::Stdio).await.is_err());
    runtime.remove(id).await.expect("removed");
    assert_eq!(runtime.inspect(id).await.expect("inspected"), None);
}

#[tokio::test]
async fn a_failed_request_does_not_say_a_credential_sent_in_the_query() {
    let port = api().await;
    let runtime = EndpointRuntime::new(loopback_allowed()).expect("a runtime");
    let mut spec = spec(format!("http://127.0.0.1:{port}"));
    if let RuntimeSpec::OpenApi { auth, .. } = &mut spec.runtime {
        *auth = ApiAuth::Query {
            name: "api_key".into(),
            secret: "KEY".into(),
        };
    }
    runtime.create(&spec).await.expect("created");
    runtime.start(spec.server_id).await.expect("running");
    let endpoint = runtime
        .connect(spec.server_id, Transport::Stdio)
        .await
        .expect("connected");
    let upstream = Upstream::open(endpoint, Duration::from_secs(5), &HttpClients::default())
        .await
        .expect("initialize");
    let dropped = call(&upstream, "dropIt", json!({})).await;
    assert_eq!(dropped.is_error, Some(true));
    assert!(!text(&dropped).contains("k3y"), "{}", text(&dropped));
    assert!(!text(&dropped).is_empty());
    let logs = runtime.logs(spec.server_id, 10).await.expect("logs");
    assert!(!logs.iter().any(|l| l.contains("k3y")), "{logs:?}");
}

#[tokio::test]
async fn addresses_the_administrator_has_not_allowed_are_refused() {
    let port = api().await;
    let runtime = EndpointRuntime::new(EndpointSettings::default()).expect("a runtime");
    let literal = runtime
        .create(&spec(format!("http://127.0.0.1:{port}")))
        .await;
    let error = literal.expect_err("loopback by address").to_string();
    assert!(error.contains("not a public address"), "{error}");

    let named = spec(format!("http://localhost:{port}"));
    runtime
        .create(&named)
        .await
        .expect("a name is checked when it is resolved");
    let error = runtime
        .start(named.server_id)
        .await
        .expect_err("localhost resolves to loopback")
        .to_string();
    assert!(error.contains("not a public address"), "{error}");
}

#[tokio::test]
async fn an_api_that_fails_its_health_check_does_not_run() {
    let port = api().await;
    let runtime = EndpointRuntime::new(loopback_allowed()).expect("a runtime");
    let mut broken = spec(format!("http://127.0.0.1:{port}"));
    if let RuntimeSpec::OpenApi { health_path, .. } = &mut broken.runtime {
        *health_path = "/down".into();
    }
    runtime.create(&broken).await.expect("created");
    // 404 is an answer: the API is there. Only a 5xx or no answer fails.
    runtime
        .start(broken.server_id)
        .await
        .expect("a 404 still answers");

    let nobody = spec("http://127.0.0.1:9".into());
    runtime.create(&nobody).await.expect("created");
    let error = runtime
        .start(nobody.server_id)
        .await
        .expect_err("nothing listens")
        .to_string();
    assert!(error.contains("did not answer its health check"), "{error}");
    let status = runtime
        .inspect(nobody.server_id)
        .await
        .expect("inspected")
        .expect("present");
    assert!(matches!(status.state, InstanceState::Exited { .. }));
}
