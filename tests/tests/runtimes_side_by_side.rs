//! One installation runs Docker and process entries side by side, each on its runtime;
//! an entry whose runtime this installation lacks is refused when a server is created
//! or upgraded to it (422 naming the field), not at start.
//! `BERTH_REQUIRE_DOCKER=1` turns a missing engine into a failure instead of a skip.

mod api_support;

use std::time::Duration;

use api_support::{process_fixture_entry, TestApp};
use berth_api::serve::runtimes::RuntimeChoice;
use berth_tests::docker::{fixture_image, require_docker, ContainerCleanup};
use reqwest::Method;
use serde_json::{json, Value};

async fn berth(runtime: RuntimeChoice) -> TestApp {
    TestApp::spawn_with(|c| {
        c.drive_runtime = true;
        c.runtime = runtime;
        c.process_manager.probe_timeout = Duration::from_secs(8);
        c.process_manager.stop_grace = Duration::from_secs(2);
        c.intervals.reconcile = Duration::from_secs(3600);
        c.intervals.health = Duration::from_secs(3600);
    })
    .await
}

fn docker_entry(image: &str) -> Value {
    json!({
        "name": "in-a-container",
        "transport": "stdio",
        "runtime": {"type": "docker", "image": image},
        "config_schema": [],
        "resources": {"memory_mb": 64, "cpus": 0.5, "pids": 64}
    })
}

fn process_entry() -> Value {
    process_fixture_entry("on-the-host", "stdio", &[])
}

async fn create(app: &TestApp, entry: &str, name: &str) -> String {
    app.create_server(&json!({"catalog_id": entry, "name": name}))
        .await
}

fn tool_names(server: &Value) -> Vec<String> {
    server["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_and_process_servers_run_side_by_side_under_auto() {
    if !require_docker() {
        return;
    }
    let image = fixture_image().await;
    let app = berth(RuntimeChoice::Auto).await;
    let in_docker = app.register(&docker_entry(&image)).await;
    let on_host = app.register(&process_entry()).await;
    let container = create(&app, &in_docker, "container-1").await;
    let _cleanup = ContainerCleanup::new(format!("berth-{container}"));
    let process = create(&app, &on_host, "process-1").await;
    for id in [&container, &process] {
        app.start(id).await;
    }
    for id in [&container, &process] {
        let running = app.until_state(id, "running").await;
        assert!(
            tool_names(&running).contains(&"echo".to_owned()),
            "{running:#}"
        );
        let logs = app.get(&format!("/api/v1/servers/{id}/logs?tail=20")).await;
        logs.expect(200);
        assert!(
            String::from_utf8_lossy(&logs.body).contains("serving MCP"),
            "{logs}"
        );
    }
    // Each on its own runtime: a container for one, a local process for the other.
    let running = app
        .get(&format!("/api/v1/servers/{container}"))
        .await
        .json();
    let container_id = running["container_id"].as_str().unwrap_or_default();
    assert!(
        container_id.len() == 64 && container_id.chars().all(|c| c.is_ascii_hexdigit()),
        "a Docker container id: {running:#}"
    );
    let running = app.get(&format!("/api/v1/servers/{process}")).await.json();
    let process_id = running["container_id"].as_str().unwrap_or_default();
    assert!(
        process_id.starts_with("proc-"),
        "a local process: {running:#}"
    );

    for id in [&container, &process] {
        app.delete_and_wait(id).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_whose_runtime_is_missing_is_refused_at_creation_and_upgrade() {
    let app = berth(RuntimeChoice::Process).await;
    let in_docker = app.register(&docker_entry("berth/absent:never")).await;
    let head = app.head().await;
    let refused = app
        .post(
            "/api/v1/servers",
            &json!({"catalog_id": in_docker, "name": "nowhere"}),
        )
        .await;
    refused.expect_problem(422);
    assert_eq!(refused.problem_fields(), vec!["catalog_id"], "{refused}");
    let detail = refused.json().to_string();
    assert!(detail.contains("docker runtime"), "{detail}");
    assert_eq!(app.head().await, head, "a refused create wrote an event");
    let listed = app.get("/api/v1/servers").await.json();
    assert_eq!(listed["total"], 0, "{listed}");

    // A server of a process entry whose next version runs an image stays where it is.
    let on_host = app.register(&process_entry()).await;
    let server = create(&app, &on_host, "pinned").await;
    let mut next = docker_entry("berth/absent:never");
    next["name"] = json!("on-the-host");
    app.json(Method::PUT, &format!("/api/v1/catalog/{on_host}"), &next)
        .await
        .expect(202);
    let head = app.head().await;
    let refused = app
        .post(&format!("/api/v1/servers/{server}/upgrade"), &json!({}))
        .await;
    refused.expect_problem(422);
    assert_eq!(
        refused.problem_fields(),
        vec!["catalog_version"],
        "{refused}"
    );
    assert_eq!(app.head().await, head, "a refused upgrade wrote an event");
    app.stop().await;
}
