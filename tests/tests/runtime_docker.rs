//! Servers really run: the process manager drives a real Docker engine with the fixture
//! MCP server image, against a real PostgreSQL, through the real HTTP API.
//! `BERTH_REQUIRE_DOCKER=1` turns a missing engine into a failure instead of a skip.

mod api_support;

use std::process::Command;
use std::time::{Duration, Instant};

use api_support::TestApp;
use berth_api::serve::runtimes::RuntimeChoice;
use berth_tests::docker::{fixture_image, require_docker, ContainerCleanup};
use serde_json::{json, Value};

/// Berth driving Docker, with short timeouts so failures show quickly, reconciling
/// every `reconcile`.
async fn berth(reconcile: Duration) -> TestApp {
    TestApp::spawn_with(|c| {
        c.drive_runtime = true;
        c.runtime = RuntimeChoice::Docker;
        c.process_manager.probe_timeout = Duration::from_secs(8);
        c.process_manager.stop_grace = Duration::from_secs(2);
        c.process_manager.restart_backoff = Duration::from_millis(200);
        c.intervals.reconcile = reconcile;
        c.intervals.health = Duration::from_secs(3600);
    })
    .await
}

/// Fast enough for drift tests.
const DRIFT: Duration = Duration::from_millis(500);
/// Slow enough that only the event feed drives the process manager.
const FEED_ONLY: Duration = Duration::from_secs(3600);

/// A catalog entry for the fixture image with its misbehaviour switches as config keys.
fn fixture_entry(name: &str, image: &str) -> Value {
    let optional =
        |key: &str| json!({"key": key, "description": "", "required": false, "secret": false});
    json!({
        "name": name,
        "description": "the fixture MCP server",
        "transport": "stdio",
        "runtime": {"type": "docker", "image": image},
        "config_schema": [
            {"key": "FIXTURE_TOKEN", "description": "a secret", "required": false, "secret": true},
            optional("FIXTURE_NEVER_ANSWER"),
            optional("FIXTURE_EXIT_IMMEDIATELY"),
            optional("FIXTURE_EXIT_AFTER_MS"),
            optional("FIXTURE_EXIT_CODE"),
        ],
        "resources": {"memory_mb": 64, "cpus": 0.5, "pids": 64}
    })
}

fn containers_of(server_id: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=berth.server_id={server_id}"),
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Fixture {
    app: TestApp,
    entry: String,
    cleanup: Vec<ContainerCleanup>,
}

impl Fixture {
    async fn new(reconcile: Duration) -> Option<Self> {
        if !require_docker() {
            return None;
        }
        let image = fixture_image().await;
        let app = berth(reconcile).await;
        let entry = app
            .post("/api/v1/catalog", &fixture_entry("fixture", &image))
            .await
            .expect(201)
            .id();
        Some(Self {
            app,
            entry,
            cleanup: Vec::new(),
        })
    }

    async fn server(
        &mut self,
        entry: &str,
        name: &str,
        config: Value,
        secrets: Value,
        policy: Value,
    ) -> String {
        let id = self
            .app
            .post(
                "/api/v1/servers",
                &json!({"catalog_id": entry, "name": name, "config": config, "secrets": secrets, "restart_policy": policy}),
            )
            .await
            .expect(201)
            .id();
        self.cleanup
            .push(ContainerCleanup::new(format!("berth-{id}")));
        id
    }

    async fn get(&self, id: &str) -> Value {
        self.app
            .get(&format!("/api/v1/servers/{id}"))
            .await
            .expect(200)
            .json()
    }

    /// Polls the server until `done` holds, returning it; panics after `within`.
    async fn until(&self, id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            // A 404 here only means the read model has not caught up with the creation.
            let answer = self.app.get(&format!("/api/v1/servers/{id}")).await;
            let server = answer.json();
            if answer.status == 200 && done(&server) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "server never got there: {server:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn state(&self, id: &str, state: &str, within: Duration) -> Value {
        self.until(id, within, |s| s["state"] == state).await
    }
}

const SOON: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_runs_answers_logs_stops_and_is_deleted_without_leftovers() {
    let Some(mut f) = Fixture::new(FEED_ONLY).await else {
        return;
    };
    let secret = format!("docker-secret-{}", uuid::Uuid::new_v4().simple());
    let entry = f.entry.clone();
    let id = f
        .server(
            &entry,
            "lifecycle",
            json!({}),
            json!({"FIXTURE_TOKEN": secret}),
            json!({"type": "never"}),
        )
        .await;
    f.app
        .command(&format!("/api/v1/servers/{id}/start"))
        .await
        .expect(202);
    let running = f.state(&id, "running", SOON).await;
    assert_eq!(running["health"], "healthy");
    let tools: Vec<&str> = running["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        tools.contains(&"echo") && tools.contains(&"add"),
        "{tools:?}"
    );

    let containers = containers_of(&id);
    assert_eq!(containers.len(), 1, "exactly one container");
    assert_eq!(
        running["container_id"].as_str().unwrap(),
        docker(&["inspect", "-f", "{{.Id}}", &containers[0]])
    );
    let inspect = docker(&["inspect", &containers[0]]);
    assert!(
        inspect.contains(&format!("FIXTURE_TOKEN={secret}")),
        "the secret reaches the container's environment"
    );
    assert!(inspect.contains("\"Privileged\": false"));
    assert!(inspect.contains("\"ReadonlyRootfs\": true"));
    assert!(inspect.contains(&format!("\"Memory\": {}", 64 * 1024 * 1024)));

    let test = f.app.command(&format!("/api/v1/servers/{id}/test")).await;
    test.expect(200);
    let test = test.json();
    assert_eq!(test["ok"], true, "{test}");
    assert!(test["protocol_version"].is_string());
    assert!(test["tools"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "env_keys"));

    let logs = f
        .app
        .get(&format!("/api/v1/servers/{id}/logs?tail=20"))
        .await;
    logs.expect(200);
    assert!(
        String::from_utf8_lossy(&logs.body).contains("serving MCP"),
        "{logs}"
    );

    f.app
        .command(&format!("/api/v1/servers/{id}/stop"))
        .await
        .expect(202);
    f.state(&id, "stopped", SOON).await;
    assert!(
        containers_of(&id).is_empty(),
        "stopping removes the container"
    );

    f.app
        .command(&format!("/api/v1/servers/{id}/start"))
        .await
        .expect(202);
    f.state(&id, "running", SOON).await;
    let deleted = f
        .app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/servers/{id}"),
            None,
            None,
            &[],
        )
        .await;
    deleted.expect(202);
    let deadline = Instant::now() + SOON;
    while f.app.get(&format!("/api/v1/servers/{id}")).await.status != 404 {
        assert!(Instant::now() < deadline, "never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        containers_of(&id).is_empty(),
        "deleting removes the container"
    );

    // The secret went to the container and nowhere else Berth keeps.
    let sql = f.app.sql().await;
    for table in ["events", "servers", "audit_log", "catalog_entries"] {
        let rows = sql
            .query(&format!("SELECT t::text FROM {table} t"), &[])
            .await
            .unwrap();
        for row in rows {
            let text: String = row.get(0);
            assert!(!text.contains(&secret), "the secret leaked into {table}");
        }
    }
    assert!(!String::from_utf8_lossy(&f.app.transcript()).contains(&secret));
    let audit = f
        .app
        .get(&format!("/api/v1/audit?server_id={id}&page_size=100"))
        .await
        .json();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    for action in [
        "server.container_created",
        "server.running",
        "server.stopped",
        "server.deleted",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let by_pm = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "server.running")
        .unwrap();
    assert_eq!(by_pm["actor"], "system:process-manager");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_specs_fail_with_a_clear_reason_and_leave_no_container() {
    let Some(mut f) = Fixture::new(FEED_ONLY).await else {
        return;
    };
    let entry = f.entry.clone();
    let good = f
        .server(
            &entry,
            "good",
            json!({}),
            json!({}),
            json!({"type": "never"}),
        )
        .await;
    f.app
        .command(&format!("/api/v1/servers/{good}/start"))
        .await
        .expect(202);
    f.state(&good, "running", SOON).await;

    let missing = f
        .app
        .post(
            "/api/v1/catalog",
            &fixture_entry("missing", "berth-missing-image:nope"),
        )
        .await
        .expect(201)
        .id();
    let cases = [
        (missing.as_str(), json!({}), "berth-missing-image:nope"),
        (
            entry.as_str(),
            json!({"FIXTURE_EXIT_IMMEDIATELY": "1"}),
            "exiting at start as asked",
        ),
        (
            entry.as_str(),
            json!({"FIXTURE_NEVER_ANSWER": "1"}),
            "MCP handshake",
        ),
    ];
    let mut ids = Vec::new();
    for (i, (catalog, config, _)) in cases.iter().enumerate() {
        let id = f
            .server(
                catalog,
                &format!("bad{i}"),
                config.clone(),
                json!({}),
                json!({"type": "never"}),
            )
            .await;
        f.app
            .command(&format!("/api/v1/servers/{id}/start"))
            .await
            .expect(202);
        ids.push(id);
    }
    for (id, (_, _, expected)) in ids.iter().zip(cases) {
        let failed = f.state(id, "failed", SOON).await;
        let error = failed["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains(expected),
            "last_error {error:?} should mention {expected:?}"
        );
        assert!(containers_of(id).is_empty(), "no orphan container for {id}");
    }
    let good_now = f.get(&good).await;
    assert_eq!(good_now["state"], "running", "other servers are unaffected");
    let test = f
        .app
        .command(&format!("/api/v1/servers/{good}/test"))
        .await
        .json();
    assert_eq!(test["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_container_is_noticed_and_the_restart_policy_decides() {
    let Some(mut f) = Fixture::new(DRIFT).await else {
        return;
    };
    let entry = f.entry.clone();
    let never = f
        .server(
            &entry,
            "never",
            json!({}),
            json!({}),
            json!({"type": "never"}),
        )
        .await;
    let again = f
        .server(
            &entry,
            "again",
            json!({}),
            json!({}),
            json!({"type": "on_failure", "max_retries": 3}),
        )
        .await;
    for id in [&never, &again] {
        f.app
            .command(&format!("/api/v1/servers/{id}/start"))
            .await
            .expect(202);
    }
    let first = f.state(&again, "running", SOON).await["container_id"].clone();
    f.state(&never, "running", SOON).await;
    for id in [&never, &again] {
        docker(&["kill", &format!("berth-{id}")]);
    }

    let failed = f.state(&never, "failed", SOON).await;
    let error = failed["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("code 137"), "{error}");
    let restarted = f
        .until(&again, SOON, |s| {
            s["state"] == "running" && s["container_id"] != first
        })
        .await;
    assert_eq!(restarted["restart_attempts"], 1);
    assert_eq!(
        containers_of(&again).len(),
        1,
        "the old container was replaced, not kept"
    );
    // `never` stays failed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(f.get(&never).await["state"], "failed");
    let audit = f
        .app
        .get(&format!("/api/v1/audit?server_id={again}&page_size=100"))
        .await
        .json();
    assert!(audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "server.exited"));
    assert!(audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "server.restarted_after_failure"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_servers_started_at_once_all_run() {
    let Some(mut f) = Fixture::new(FEED_ONLY).await else {
        return;
    };
    let entry = f.entry.clone();
    let image = fixture_image().await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(
            f.server(
                &entry,
                &format!("many{i}"),
                json!({}),
                json!({}),
                json!({"type": "never"}),
            )
            .await,
        );
    }
    let began = Instant::now();
    for id in &ids {
        f.app
            .command(&format!("/api/v1/servers/{id}/start"))
            .await
            .expect(202);
    }
    for id in &ids {
        f.state(id, "running", Duration::from_secs(120)).await;
    }
    let through_berth = began.elapsed();

    // The same ten containers with plain `docker run`, until each is running.
    let names: Vec<String> = (0..10)
        .map(|i| format!("berth-baseline-{}-{i}", uuid::Uuid::new_v4().simple()))
        .collect();
    let _cleanup: Vec<ContainerCleanup> = names.iter().map(ContainerCleanup::new).collect();
    let began = Instant::now();
    for name in &names {
        let status = Command::new("docker")
            .args(["run", "-d", "-i", "--name", name, &image])
            .output()
            .expect("docker run");
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    let plain = began.elapsed();
    println!(
        "10 fixture servers: through Berth (start → running, MCP handshake included) {:.2} s; \
         plain `docker run -d` {:.2} s; ratio {:.1}×",
        through_berth.as_secs_f64(),
        plain.as_secs_f64(),
        through_berth.as_secs_f64() / plain.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_container_of_this_installation_with_no_server_is_removed() {
    let Some(f) = Fixture::new(DRIFT).await else {
        return;
    };
    let image = fixture_image().await;
    let installation: uuid::Uuid = f
        .app
        .sql()
        .await
        .query_one("SELECT id FROM installation", &[])
        .await
        .unwrap()
        .get(0);
    let stray = uuid::Uuid::new_v4();
    let name = format!("berth-{stray}");
    let _cleanup = ContainerCleanup::new(&name);
    // Another installation's container on the same engine must be left alone.
    let foreign = format!("berth-{}", uuid::Uuid::new_v4());
    let _foreign_cleanup = ContainerCleanup::new(&foreign);
    for (container, owner) in [
        (&name, installation.to_string()),
        (&foreign, uuid::Uuid::new_v4().to_string()),
    ] {
        let run = Command::new("docker")
            .args([
                "run",
                "-d",
                "-i",
                "--name",
                container,
                "--label",
                &format!("berth.managed={owner}"),
                "--label",
                &format!("berth.server_id={}", container.trim_start_matches("berth-")),
                &image,
            ])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let deadline = Instant::now() + SOON;
    while !containers_of(&stray.to_string()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the stray container was never removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &foreign]),
        "true",
        "another installation's container is not ours to remove"
    );
}
