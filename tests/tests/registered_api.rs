//! Registered HTTP APIs: catalog entries whose tools are the operations of an OpenAPI
//! document, served by Berth itself.

mod api_support;

use api_support::{loopback, processes, spawn_trusting, tool_names, TestApp};
use berth_tests::mcp_client::McpClient;
use berth_tests::pets_api::PetsApi;
use berth_tests::tls_proxy::TlsProxy;
use serde_json::{json, Value};

fn petstore() -> Value {
    let text = include_str!("../fixtures/openapi/petstore3.json");
    serde_json::from_str(text).expect("the Petstore fixture is JSON")
}

fn entry(document: Value, runtime: Value) -> Value {
    let mut runtime_json = json!({
        "type": "openapi",
        "document": document,
        "base_url": "http://127.0.0.1:9/api/v3",
    });
    if let (Some(extra), Some(target)) = (runtime.as_object(), runtime_json.as_object_mut()) {
        target.extend(extra.clone());
    }
    json!({
        "name": "petstore",
        "description": "the Swagger Petstore",
        "transport": "stdio",
        "runtime": runtime_json,
        "config_schema": [{"key": "PETSTORE_KEY", "secret": true, "required": true}],
    })
}

#[tokio::test]
async fn a_public_document_registers_and_is_kept_as_it_was_sent() {
    let app = TestApp::spawn().await;
    let body = entry(
        petstore(),
        json!({
            "auth": {"type": "header", "name": "api_key", "secret": "PETSTORE_KEY"},
            "operations": ["getPetById", "findPetsByStatus", "POST /pet"],
            "health_path": "/openapi.json"
        }),
    );
    let created = app.post("/api/v1/catalog", &body).await;
    created.expect(201);
    let id = created.id();
    let read = app
        .get(&format!(
            "/api/v1/catalog/{id}?min_position={}",
            created.position()
        ))
        .await;
    read.expect(200);
    let runtime = &read.json()["runtime"];
    assert_eq!(runtime["type"], "openapi");
    assert_eq!(
        runtime["document"],
        petstore(),
        "the document is kept as sent"
    );
    assert_eq!(runtime["operations"].as_array().map(Vec::len), Some(3));
    app.stop().await;
}

/// The entry registered by `body` (a 201 expected), as the catalog shows it.
async fn registered(app: &TestApp, body: &Value) -> Value {
    let created = app.post("/api/v1/catalog", body).await;
    created.expect(201);
    let read = app
        .get(&format!(
            "/api/v1/catalog/{}?min_position={}",
            created.id(),
            created.position()
        ))
        .await;
    read.expect(200);
    read.json()
}

#[tokio::test]
async fn a_document_given_as_yaml_or_fetched_once_from_a_url_is_kept_as_json() {
    let api = PetsApi::start("k3y").await;
    let app = TestApp::spawn_with(loopback).await;
    // The published YAML, as text: the same document as the JSON fixture.
    let yaml = include_str!("../fixtures/openapi/petstore3.yaml");
    let mut body = entry(json!(yaml), json!({}));
    let kept = registered(&app, &body).await;
    assert_eq!(kept["runtime"]["document"], petstore());
    // Every GET by default: the Petstore has 8.
    body["name"] = json!("petstore-gets");
    body["runtime"]["document"] = json!(yaml);
    let kept = registered(&app, &body).await;
    assert_eq!(kept["runtime"]["operations"], Value::Null, "{kept}");
    assert_eq!(kept["tools"].as_array().map(Vec::len), Some(8), "{kept}");

    // Fetched from the API itself, once: what it served is what the entry keeps.
    let mut body = entry(Value::Null, json!({"base_url": api.url()}));
    body["name"] = json!("pets-fetched");
    body["runtime"]
        .as_object_mut()
        .map(|r| r.remove("document"));
    body["runtime"]["document_url"] = json!(format!("{}/openapi.json", api.url()));
    let kept = registered(&app, &body).await;
    assert_eq!(kept["runtime"]["document"], PetsApi::document());
    // Its tools are known from the document, before any server reports them: every GET.
    let tools = tool_names(&kept);
    assert_eq!(tools, ["getGone", "getPet", "getSlow"], "{kept}");
    assert!(
        kept["tools"][1]["input_schema"]["properties"]["id"].is_object(),
        "{kept}"
    );
    assert_eq!(
        kept["tools"][1]["description"], "GET /pets/{id}: One pet",
        "{kept}"
    );
    // Changed into an entry whose servers report its tools (it has none yet): the
    // document's are gone.
    let mut changed = body.clone();
    changed["runtime"] = json!({"type": "process", "command": "true"});
    let updated = app
        .json(
            reqwest::Method::PUT,
            &format!(
                "/api/v1/catalog/{}",
                kept["id"].as_str().unwrap_or_default()
            ),
            &changed,
        )
        .await;
    updated.expect(202);
    let now = app
        .get(&format!(
            "/api/v1/catalog/{}?min_position={}",
            kept["id"].as_str().unwrap_or_default(),
            updated.position()
        ))
        .await
        .json();
    assert_eq!(now["tools"], json!([]), "{now}");
    assert_eq!(kept["runtime"].get("document_url"), None, "{kept}");
    let fetched = api
        .requests
        .lock()
        .map(|r| {
            r.iter()
                .filter(|l| l.starts_with("GET /openapi.json"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(fetched, 1, "the document is fetched once");

    // Neither, both, unreadable text, a URL that answers 404, or one nothing answers at:
    // 422 naming the field, and nothing registered.
    let before = app.head().await;
    let with = |document: Value, url: Option<String>| {
        let mut body = entry(document, json!({}));
        body["name"] = json!("refused");
        if let Some(url) = url {
            body["runtime"]["document_url"] = json!(url);
        }
        if body["runtime"]["document"].is_null() {
            body["runtime"]
                .as_object_mut()
                .map(|r| r.remove("document"));
        }
        body
    };
    for (body, field) in [
        (with(Value::Null, None), "runtime.document"),
        (
            with(petstore(), Some(format!("{}/openapi.json", api.url()))),
            "runtime.document",
        ),
        (with(json!("openapi: [unclosed"), None), "runtime.document"),
        (
            with(Value::Null, Some(format!("{}/nothing.json", api.url()))),
            "runtime.document_url",
        ),
        (
            with(Value::Null, Some("http://127.0.0.1:9/openapi.json".into())),
            "runtime.document_url",
        ),
        (
            with(Value::Null, Some("file:///etc/passwd".into())),
            "runtime.document_url",
        ),
    ] {
        let answer = app.post("/api/v1/catalog", &body).await;
        answer.expect(422);
        let fields = answer.problem_fields();
        assert!(fields.iter().any(|f| f == field), "{field}: {fields:?}");
    }
    assert_eq!(
        app.head().await,
        before,
        "a refused registration wrote an event"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_document_url_at_an_address_the_administrator_has_not_allowed_is_never_fetched() {
    let api = PetsApi::start("k3y").await;
    let app = TestApp::spawn_with(processes).await;
    let mut body = entry(Value::Null, json!({}));
    body["runtime"]
        .as_object_mut()
        .map(|r| r.remove("document"));
    body["runtime"]["document_url"] = json!(format!("{}/openapi.json", api.url()));
    let answer = app.post("/api/v1/catalog", &body).await;
    answer.expect(422);
    let errors = answer.json()["errors"].to_string();
    assert!(
        errors.contains("runtime.document_url") && errors.contains("not a public address"),
        "{errors}"
    );
    assert!(
        api.requests.lock().map(|r| r.is_empty()).unwrap_or(false),
        "a request reached it"
    );
    app.stop().await;
}

#[tokio::test]
async fn what_cannot_become_tools_is_refused_naming_the_path_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let before = app.head().await;

    let mut dangling = petstore();
    dangling["paths"]["/pet/{petId}"]["get"]["parameters"][0] =
        json!({"$ref": "#/components/parameters/Missing"});
    let cases = [
        (
            entry(dangling, json!({})),
            "runtime.document.paths./pet/{petId}.get.parameters[0]",
        ),
        (
            entry(json!({"swagger": "2.0"}), json!({})),
            "runtime.document.openapi",
        ),
        (
            entry(petstore(), json!({"operations": ["launchRocket"]})),
            "runtime.operations[0]",
        ),
        (
            entry(
                petstore(),
                json!({"auth": {"type": "bearer", "secret": "NOT_A_KEY"}}),
            ),
            "runtime.auth.secret",
        ),
        (
            entry(petstore(), json!({"base_url": "ftp://example.test"})),
            "runtime.base_url",
        ),
    ];
    for (body, field) in cases {
        let answer = app.post("/api/v1/catalog", &body).await;
        answer.expect_problem(422);
        assert!(
            answer.problem_fields().iter().any(|f| f == field),
            "{field} not named: {answer}"
        );
    }
    let mut http = entry(petstore(), json!({}));
    http["transport"] = json!("http");
    let answer = app.post("/api/v1/catalog", &http).await;
    answer.expect_problem(422);
    assert!(
        answer.problem_fields().iter().any(|f| f == "transport"),
        "{answer}"
    );

    assert_eq!(app.head().await, before, "a refused entry wrote an event");
    app.stop().await;
}

/// Registers the pets API at `base_url` (authenticated by header with the secret
/// `PETS_KEY`), creates server `pets` of it with `key`, and waits until it runs; returns
/// its id.
async fn running_pets(app: &TestApp, base_url: &str, key: &str) -> String {
    let id = pets_server(app, base_url, key, "pets").await;
    app.start(&id).await;
    app.until_state(&id, "running").await;
    id
}

/// Registers the pets API at `base_url` as entry `<name>-api` and creates server `name`
/// of it with `key`.
async fn pets_server(app: &TestApp, base_url: &str, key: &str, name: &str) -> String {
    let entry = json!({
        "name": format!("{name}-api"),
        "description": "a small API on loopback",
        "transport": "stdio",
        "runtime": {
            "type": "openapi",
            "document": PetsApi::document(),
            "base_url": base_url,
            "auth": {"type": "header", "name": "X-Key", "secret": "PETS_KEY"},
            "health_path": "/health",
            "operations": ["getPet", "addPet", "getGone", "getSlow"]
        },
        "config_schema": [{"key": "PETS_KEY", "secret": true, "required": true}],
        "gateway": {"call_timeout_secs": 3}
    });
    let catalog_id = app.register(&entry).await;
    app.create_server(
        &json!({"catalog_id": catalog_id, "name": name, "secrets": {"PETS_KEY": key}}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_mcp_client_calls_a_registered_api_through_the_gateway() {
    let api = PetsApi::start("k3y-of-pets").await;
    let app = TestApp::spawn_with(loopback).await;
    let id = running_pets(&app, &api.url(), "k3y-of-pets").await;

    // Its tools are the operations chosen, with their input schemas.
    let server = app.get(&format!("/api/v1/servers/{id}")).await.json();
    let tools = tool_names(&server);
    assert_eq!(
        tools,
        ["getPet", "addPet", "getGone", "getSlow"],
        "{server}"
    );

    let mut client = McpClient::connect(&app.url("/mcp"), app.token(), "legacy").await;
    let names = client.tool_names().await;
    assert_eq!(
        names,
        [
            "pets__addPet",
            "pets__getGone",
            "pets__getPet",
            "pets__getSlow"
        ]
    );

    // Path and query parameters, and the server's key, which the API checks.
    let answer = client
        .call("pets__getPet", json!({"id": 7, "fields": "name tag"}))
        .await;
    assert_eq!(answer["result"]["isError"], json!(false), "{answer}");
    let pet: Value = serde_json::from_str(
        answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or(""),
    )
    .unwrap_or_default();
    assert_eq!(pet["id"], "7", "{answer}");
    assert_eq!(pet["query"], "fields=name+tag", "{answer}");
    // A JSON body.
    let answer = client
        .call(
            "pets__addPet",
            json!({"body": {"name": "tom", "tag": "cat"}}),
        )
        .await;
    let added = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert_eq!(
        serde_json::from_str::<Value>(added).ok(),
        Some(json!({"name": "tom", "tag": "cat", "id": 42})),
        "{answer}"
    );
    // A 404 from the API is the tool's error result, not a failed call.
    let answer = client.call("pets__getGone", json!({})).await;
    assert_eq!(answer["result"]["isError"], json!(true), "{answer}");
    assert!(
        answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("HTTP 404"),
        "{answer}"
    );
    // A hanging API is cut off at the entry's call timeout.
    let started = std::time::Instant::now();
    let answer = client.call("pets__getSlow", json!({})).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{answer}"
    );
    assert!(
        answer.get("error").is_some() || answer["result"]["isError"] == json!(true),
        "{answer}"
    );
    client.close().await;

    // Every call reached the API with the key, and the key is nowhere in Berth's log.
    let seen = api.requests.lock().map(|r| r.clone()).unwrap_or_default();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("GET /pets/7?fields=name+tag")),
        "{seen:?}"
    );
    let sql = app.sql().await;
    let leaked = sql
        .query_one(
            "SELECT count(*) FROM events WHERE payload::text LIKE '%k3y-of-pets%' OR metadata::text LIKE '%k3y-of-pets%'",
            &[],
        )
        .await
        .expect("counting")
        .get::<_, i64>(0);
    assert_eq!(leaked, 0);
    let logs = app.get(&format!("/api/v1/servers/{id}/logs")).await;
    assert!(
        logs.body
            .windows(b"GET /pets/{id} -> 200".len())
            .any(|w| w == b"GET /pets/{id} -> 200"),
        "{logs}"
    );
    assert!(!String::from_utf8_lossy(&logs.body).contains("k3y-of-pets"));
    app.stop().await;
}

#[tokio::test]
async fn an_api_at_an_address_the_administrator_has_not_allowed_never_runs() {
    let api = PetsApi::start("k3y").await;
    // Processes, but no network beyond the public internet.
    let app = TestApp::spawn_with(processes).await;
    let mut entry = entry(
        PetsApi::document(),
        json!({"base_url": api.url(), "health_path": "/health", "operations": ["getPet"]}),
    );
    entry["config_schema"] = json!([]);
    let catalog_id = app.register(&entry).await;
    let id = app
        .create_server(&json!({"catalog_id": catalog_id, "name": "inside"}))
        .await;
    app.start(&id).await;
    let server = app.until_state(&id, "failed").await;
    assert!(
        server["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("not a public address"),
        "{server}"
    );
    assert!(
        api.requests.lock().map(|r| r.is_empty()).unwrap_or(false),
        "a request reached it"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registered_api_runs_again_after_berth_restarts() {
    let api = PetsApi::start("k3y").await;
    let mut app = TestApp::spawn_with(loopback).await;
    let id = running_pets(&app, &api.url(), "k3y").await;
    // Its server lives in Berth's memory: a restart ends it, as it ends local processes.
    app.restart_with(loopback).await;
    let server = app.until_state(&id, "running").await;
    assert_eq!(server["last_error"], Value::Null, "{server}");
    let mut client = McpClient::connect(&app.url("/mcp"), app.token(), "legacy").await;
    let answer = client.call("pets__getPet", json!({"id": 1})).await;
    assert_eq!(answer["result"]["isError"], json!(false), "{answer}");
    client.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_https_api_is_called_when_its_certificate_authority_is_trusted_and_never_when_not() {
    let api = PetsApi::start("k3y").await;
    let trusted = TlsProxy::start(api.port).await;
    let stranger = TlsProxy::start(api.port).await;
    let (app, _ca) = spawn_trusting(trusted.ca_pem()).await;
    let id = running_pets(&app, &trusted.url(), "k3y").await;
    let mut client = McpClient::connect(&app.url("/mcp"), app.token(), "legacy").await;
    let answer = client.call("pets__getPet", json!({"id": 5})).await;
    assert_eq!(answer["result"]["isError"], json!(false), "{answer}");
    client.close().await;
    app.json(
        reqwest::Method::POST,
        &format!("/api/v1/servers/{id}/stop"),
        &json!({}),
    )
    .await
    .expect(202);
    app.until_state(&id, "stopped").await;

    // A certificate no trusted authority signed: the server fails saying so, and no
    // request gets through (the key would go with it).
    let before = api.requests.lock().map(|r| r.len()).unwrap_or(0);
    let other = pets_server(&app, &stranger.url(), "k3y", "stranger").await;
    app.start(&other).await;
    let server = app.until_state(&other, "failed").await;
    assert!(
        server["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("certificate"),
        "{server}"
    );
    assert_eq!(api.requests.lock().map(|r| r.len()).unwrap_or(0), before);
    app.stop().await;
}
