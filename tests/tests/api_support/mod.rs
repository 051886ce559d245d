//! Shared by the `api_*` tests: Berth's real HTTP stack started in-process on port 0
//! against a fresh test database, a client that records every response, and direct
//! SQL access for checking what was (not) written.

#![allow(dead_code)]

use std::sync::Mutex;
use std::time::Duration;

use berth_api::{start_server, RunningServer, ServeConfig};
use berth_infrastructure::db::Database;
use berth_tests::{test_database, TestDatabase};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use uuid::Uuid;

/// One answered request.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its raw body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The `position` of a command's answer (panics with the body otherwise).
    pub fn position(&self) -> i64 {
        self.json()["position"]
            .as_i64()
            .unwrap_or_else(|| panic!("no position in {self}"))
    }

    /// The `id` of a command's answer.
    pub fn id(&self) -> String {
        self.json()["id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no id in {self}"))
    }

    /// The fields named by a problem document's `errors`.
    pub fn problem_fields(&self) -> Vec<String> {
        self.json()["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts the status, showing the body when it differs.
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "unexpected answer: {self}");
        self
    }

    /// Asserts this is a problem document with `status`.
    pub fn expect_problem(&self, status: u16) -> &Self {
        self.expect(status);
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{self}"
        );
        let doc = self.json();
        assert_eq!(doc["status"], status, "{self}");
        for field in ["type", "title", "detail"] {
            assert!(doc[field].is_string(), "problem without {field}: {self}");
        }
        self
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, String::from_utf8_lossy(&self.body))
    }
}

/// A running Berth with its own database and data directory.
pub struct TestApp {
    server: Option<RunningServer>,
    /// The test's database.
    pub db: TestDatabase,
    data_dir: TempDir,
    client: reqwest::Client,
    base: String,
    token: String,
    transcript: Mutex<Vec<u8>>,
}

fn config(db: &TestDatabase, data_dir: &TempDir) -> ServeConfig {
    let mut config = ServeConfig::new(data_dir.path())
        .with_database_url(db.url())
        .with_listen("127.0.0.1:0");
    config.workers = 2;
    config.pool_size = 8;
    // These tests are about the API; servers stay where commands put them.
    config.drive_runtime = false;
    // Tests send requests as fast as they can; `api_rate_limit` turns the limit on.
    config.rate_limit.per_second = 0;
    config
}

impl TestApp {
    /// Starts Berth on a fresh database.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts Berth on a fresh database with `adjust` applied to its settings.
    pub async fn spawn_with(adjust: impl FnOnce(&mut ServeConfig)) -> Self {
        let db = test_database().await;
        let data_dir = tempfile::tempdir().expect("creating a data directory");
        let mut settings = config(&db, &data_dir);
        adjust(&mut settings);
        let server = start_server(settings)
            .await
            .unwrap_or_else(|e| panic!("starting berth: {e:#}"));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("building the HTTP client");
        Self {
            base: server.base_url(),
            token: server.admin_token().to_string(),
            server: Some(server),
            db,
            data_dir,
            client,
            transcript: Mutex::new(Vec::new()),
        }
    }

    /// Starts Berth driving servers as local processes, with timeouts short enough for
    /// tests.
    pub async fn spawn_with_processes() -> Self {
        Self::spawn_with(processes).await
    }

    /// Stops Berth and starts it again on the same address, database and data
    /// directory, with `adjust` applied to its settings.
    pub async fn restart_with(&mut self, adjust: impl FnOnce(&mut ServeConfig)) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("stopping berth");
        }
        let listen = self.base.trim_start_matches("http://").to_owned();
        let mut settings = config(&self.db, &self.data_dir).with_listen(listen);
        adjust(&mut settings);
        let server = start_server(settings)
            .await
            .unwrap_or_else(|e| panic!("restarting berth: {e:#}"));
        self.base = server.base_url();
        self.token = server.admin_token().to_string();
        self.server = Some(server);
    }

    /// Waits (up to 60 s) until server `id` is in `state`, and returns it.
    pub async fn until_state(&self, id: &str, state: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let server = self.get(&format!("/api/v1/servers/{id}")).await.json();
            if server["state"] == state {
                return server;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never {state}: {server:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops Berth and starts it again on the same database and data directory.
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("stopping berth");
        }
        let server = start_server(config(&self.db, &self.data_dir))
            .await
            .unwrap_or_else(|e| panic!("restarting berth: {e:#}"));
        self.base = server.base_url();
        self.token = server.admin_token().to_string();
        self.server = Some(server);
    }

    /// Stops Berth cleanly.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("stopping berth");
        }
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// The admin token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with the admin token (unless `token` overrides it; `Some("")`
    /// sends none), recording the answer in the transcript.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.client.request(method, self.url(path));
        match token.unwrap_or(&self.token) {
            "" => {}
            t => request = request.bearer_auth(t),
        }
        if let Some(body) = body {
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            {
                request = request.header("content-type", "application/json");
            }
            request = request.body(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("sending {path}: {e:?}"));
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("reading the body").to_vec();
        let mut transcript = self.transcript.lock().unwrap_or_else(|e| e.into_inner());
        for (name, value) in &headers {
            transcript.extend_from_slice(name.as_str().as_bytes());
            transcript.extend_from_slice(value.as_bytes());
        }
        transcript.extend_from_slice(&body);
        Answer {
            status,
            headers,
            body,
        }
    }

    /// `method path` without a body, sent with `key` instead of the admin token.
    pub async fn send_as(&self, key: &str, method: Method, path: &str) -> Answer {
        self.send(method, path, None, Some(key), &[]).await
    }

    /// `GET path` with the token.
    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, None, &[]).await
    }

    /// `method path` with a JSON body and the token.
    pub async fn json(&self, method: Method, path: &str, body: &Value) -> Answer {
        let bytes = serde_json::to_vec(body).expect("serialising a body");
        self.send(method, path, Some(bytes), None, &[]).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.json(Method::POST, path, body).await
    }

    /// `POST path` without a body (lifecycle commands).
    pub async fn command(&self, path: &str) -> Answer {
        self.send(Method::POST, path, None, None, &[]).await
    }

    /// Registers catalog entry `entry`, expecting 201, and returns its id.
    pub async fn register(&self, entry: &Value) -> String {
        self.post("/api/v1/catalog", entry).await.expect(201).id()
    }

    /// Creates a server from `body`, expecting 201, and returns its id.
    pub async fn create_server(&self, body: &Value) -> String {
        self.post("/api/v1/servers", body).await.expect(201).id()
    }

    /// Asks server `id` to start, expecting 202.
    pub async fn start(&self, id: &str) {
        self.command(&format!("/api/v1/servers/{id}/start"))
            .await
            .expect(202);
    }

    /// Deletes server `id` and waits (up to 60 s) until it is gone.
    pub async fn delete_and_wait(&self, id: &str) {
        self.send(
            Method::DELETE,
            &format!("/api/v1/servers/{id}"),
            None,
            None,
            &[],
        )
        .await
        .expect(202);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.get(&format!("/api/v1/servers/{id}")).await.status != 404 {
            assert!(std::time::Instant::now() < deadline, "{id} never deleted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every response header and body received so far, concatenated.
    pub fn transcript(&self) -> Vec<u8> {
        self.transcript
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A direct connection to the test database.
    pub async fn sql(&self) -> tokio_postgres::Client {
        self.db
            .database()
            .connect()
            .await
            .expect("connecting to the test database")
    }

    /// The event store's head position, read directly.
    pub async fn head(&self) -> i64 {
        let row = self
            .sql()
            .await
            .query_one("SELECT coalesce(max(global_position), 0) FROM events", &[])
            .await
            .expect("reading the head position");
        row.get(0)
    }

    /// Waits until every event stored so far can be read from the feed (see
    /// [`feed_settled`]).
    pub async fn feed_settled(&self) {
        feed_settled(&self.db.database()).await;
    }

    /// Registers a custom catalog entry with a required plain key `API_URL`, a
    /// required secret `API_TOKEN` and an optional `MODE` with a default.
    pub async fn register_fixture(&self, name: &str) -> Answer {
        self.post("/api/v1/catalog", &fixture_entry(name)).await
    }
}

/// Waits until every event stored in `db` so far can be read from the feed. The feed
/// holds events back while an older transaction is open anywhere in the cluster
/// (another test's included), so a list taken at once could stop short of what was
/// written.
pub async fn feed_settled(db: &Database) {
    let sql = db.connect().await.expect("connecting to the test database");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let held_back: i64 = sql
            .query_one(
                "SELECT count(*) FROM events \
                 WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot())",
                &[],
            )
            .await
            .expect("counting held-back events")
            .get(0);
        if held_back == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events held back for 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The names of the tools `holder` (a server or a catalog entry) lists, in its order.
pub fn tool_names(holder: &Value) -> Vec<&str> {
    holder["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect()
}

/// Settings for driving servers as local processes, with timeouts short enough for tests.
pub fn processes(c: &mut ServeConfig) {
    c.drive_runtime = true;
    c.runtime = berth_api::serve::runtimes::RuntimeChoice::Process;
    c.process_manager.probe_timeout = Duration::from_secs(8);
    c.process_manager.stop_grace = Duration::from_secs(2);
    c.intervals.reconcile = Duration::from_millis(500);
}

/// [`processes`], with loopback allowed for registered APIs and remote servers.
pub fn loopback(c: &mut ServeConfig) {
    processes(c);
    c.upstream_allowed_networks = vec!["127.0.0.1/32".into()];
}

/// A Berth as [`loopback`] that trusts the certificate authority `ca_pem` for HTTPS,
/// with the directory holding it (removed when dropped).
pub async fn spawn_trusting(ca_pem: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a directory");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("writing the CA");
    let app = TestApp::spawn_with(|c| {
        loopback(c);
        c.upstream_ca_file = Some(ca_file.clone());
    })
    .await;
    (app, dir)
}

/// A user made through the API, with its first key.
pub struct Caller {
    /// Its user id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its first API key.
    pub key: String,
    /// That key's id.
    pub key_id: String,
}

/// Creates user `name` with `role` as the administrator, and a first key for it.
pub async fn user(app: &TestApp, name: &str, role: &str) -> Caller {
    let created = app
        .post("/api/v1/users", &json!({"name": name, "role": role}))
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let key = app
        .post(
            &format!("/api/v1/users/{id}/keys"),
            &json!({"name": "main"}),
        )
        .await;
    assert_eq!(key.status, 201, "{key:?}");
    let body = key.json();
    let secret = body["key"].as_str().unwrap_or_default().to_string();
    assert!(secret.starts_with(body["prefix"].as_str().unwrap_or("?")));
    Caller {
        id,
        name: name.into(),
        key: secret,
        key_id: body["id"].as_str().unwrap_or_default().to_string(),
    }
}

/// A catalog entry body for tests.
pub fn fixture_entry(name: &str) -> Value {
    json!({
        "name": name,
        "description": "a fixture for the API tests",
        "transport": "stdio",
        "runtime": {"type": "docker", "image": "berth/fixture:latest", "command": ["serve"]},
        "config_schema": [
            {"key": "API_URL", "description": "where to call", "required": true, "secret": false},
            {"key": "API_TOKEN", "description": "credential", "required": true, "secret": true},
            {"key": "MODE", "description": "speed", "required": false, "secret": false, "default": "fast"}
        ],
        "resources": {"memory_mb": 128, "cpus": 0.5, "pids": 32}
    })
}

/// A `process` catalog entry running the fixture MCP server over `transport`, with the
/// optional plain settings `keys`.
pub fn process_fixture_entry(name: &str, transport: &str, keys: &[&str]) -> Value {
    let schema: Vec<Value> = keys
        .iter()
        .map(|key| json!({"key": key, "required": false, "secret": false}))
        .collect();
    json!({
        "name": name,
        "transport": transport,
        "runtime": {"type": "process", "command": berth_tests::docker::fixture_binary().to_string_lossy()},
        "config_schema": schema
    })
}

/// A valid server body for the fixture entry `catalog_id`.
pub fn server_body(catalog_id: &str, name: &str, token: &str) -> Value {
    json!({
        "catalog_id": catalog_id,
        "name": name,
        "config": {"API_URL": "https://example.test/api"},
        "secrets": {"API_TOKEN": token}
    })
}

/// A random UUID as text.
pub fn uuid() -> String {
    Uuid::new_v4().to_string()
}
