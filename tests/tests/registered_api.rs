//! Registered HTTP APIs: catalog entries whose tools are the operations of an OpenAPI
//! document, served by Berth itself.

mod api_support;

use api_support::TestApp;
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
