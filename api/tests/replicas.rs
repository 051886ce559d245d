//! Several `berth serve` processes on one PostgreSQL cluster started by the test: two
//! `--role api` and two `--role worker` (one active, one standing by), sharing the
//! installation's keys as files, as a deployment mounts them.
//!
//! - Commands and gateway calls go to both API nodes (the MCP client's requests
//!   alternate between them within one session).
//! - The active worker is `kill -9`ed in the middle of a bulk start of 10 Docker servers:
//!   the standby takes over within seconds and finishes it. Every server runs exactly
//!   once (containers counted), none has a second outcome event, the log verifies, and
//!   the read models equal a clean rebuild.
//! - An API node is `kill -9`ed under 16 clients sending commands: they retry on the
//!   other, and every command acknowledged is in the log.
//! - A key revoked through one API node stops working on the other within a second.
//! - An event stream resumed on the other API node with `Last-Event-ID` gets exactly the
//!   later events.

#[allow(dead_code)]
mod cli_support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_infrastructure::nodes;
use berth_tests::docker::{fixture_image, require_docker, ContainerCleanup};
use berth_tests::mcp_client::McpClient;
use berth_tests::{test_database, TestDatabase};
use cli_support::{berth_command, data_dir, Serve};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// How many servers the bulk start starts.
const SERVERS: usize = 10;

/// One API node as a client sees it.
#[derive(Clone)]
struct Node {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Node {
    fn of(serve: &Serve, token: &str) -> Self {
        Self {
            base: serve.base_url().to_owned(),
            token: token.to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a client"),
        }
    }

    /// `host:port`.
    fn origin(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// `method path` with `body`, as `token`: the status and the JSON answer (`Null`
    /// when there is none); `Err` when the node did not answer.
    async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: &str,
    ) -> Result<(StatusCode, Value), reqwest::Error> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// `method path` as the administrator; expects a success.
    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self
            .try_send(method, path, body.as_ref(), &self.token)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(status.is_success(), "{path}: {status} {answer}");
        answer
    }

    async fn get(&self, path: &str) -> Value {
        self.ok(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.ok(Method::POST, path, Some(body)).await
    }
}

/// The nodes of one installation.
struct Installation {
    db: TestDatabase,
    _dirs: Vec<tempfile::TempDir>,
    first_dir: std::path::PathBuf,
    token: String,
}

impl Installation {
    /// Starts the first node (which creates the installation's keys and administrator).
    fn first(db: TestDatabase, role: &str, node: &str) -> (Self, Serve) {
        let (dir, path) = data_dir("berth-replica");
        let serve = Serve::start_in(
            &path,
            &["--role", role, "--node", node],
            &[
                ("DATABASE_URL", &db.url()),
                ("BERTH_BULK_CONCURRENCY", "2"),
                ("BERTH_RATE_LIMIT_PER_SECOND", "0"),
            ],
        );
        let token = std::fs::read_to_string(path.join("admin-token"))
            .expect("the admin token")
            .trim()
            .to_owned();
        let installation = Self {
            db,
            _dirs: vec![dir],
            first_dir: path,
            token,
        };
        (installation, serve)
    }

    /// Starts another node with the first one's keys and administrator token, copied
    /// into its own data directory as a deployment mounts them.
    fn another(&mut self, role: &str, node: &str) -> Serve {
        let (dir, path) = data_dir("berth-replica");
        std::fs::DirBuilder::new()
            .mode(0o711)
            .create(&path)
            .expect("a data directory");
        for file in ["master.key", "signing.key", "admin-token"] {
            let from = self.first_dir.join(file);
            if from.exists() {
                std::fs::copy(&from, path.join(file)).expect("copying a key");
                std::fs::set_permissions(path.join(file), std::fs::Permissions::from_mode(0o600))
                    .expect("permissions");
            }
        }
        let serve = Serve::start_in(
            &path,
            &["--role", role, "--node", node],
            &[
                ("DATABASE_URL", &self.db.url()),
                ("BERTH_BULK_CONCURRENCY", "2"),
                ("BERTH_RATE_LIMIT_PER_SECOND", "0"),
            ],
        );
        self._dirs.push(dir);
        serve
    }

    async fn pool(&self) -> deadpool_postgres::Pool {
        self.db.database().pool(2).expect("a pool")
    }
}

/// The node holding the worker lease, waiting up to `within` for one.
async fn active_worker(pool: &deadpool_postgres::Pool, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(active) = nodes::active(pool, None).await.expect("the nodes") {
            return Some(active.name);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The names of the containers of this installation, running or not.
fn containers(installation_id: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label=berth.managed={installation_id}"),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// How many events of each type server `id`'s stream holds.
async fn event_counts(pool: &deadpool_postgres::Pool, id: &str) -> BTreeMap<String, i64> {
    let client = pool.get().await.expect("a connection");
    client
        .query(
            "SELECT event_type, count(*) FROM events WHERE aggregate_type = 'server' \
             AND aggregate_id = $1 GROUP BY event_type",
            &[&id],
        )
        .await
        .expect("counting events")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// Every row of `table` as JSON, in a stable order.
async fn rows(pool: &deadpool_postgres::Pool, table: &str, order: &str) -> Vec<Value> {
    let client = pool.get().await.expect("a connection");
    client
        .query(
            &format!("SELECT to_jsonb(t) FROM {table} t ORDER BY {order}"),
            &[],
        )
        .await
        .expect("reading a read model")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_fail_over_without_losing_or_doing_anything_twice() {
    if !require_docker() {
        return;
    }
    let image = fixture_image().await;
    let (mut installation, w1) = Installation::first(test_database().await, "worker", "w1");
    let w2 = installation.another("worker", "w2");
    let api1 = installation.another("api", "api1");
    let api2 = installation.another("api", "api2");
    let pool = installation.pool().await;
    let token = installation.token.clone();
    let (a, b) = (Node::of(&api1, &token), Node::of(&api2, &token));
    assert_eq!(
        active_worker(&pool, Duration::from_secs(30))
            .await
            .as_deref(),
        Some("w1"),
        "the first worker takes the lease and the second stands by"
    );
    let installation_id = berth_infrastructure::db::installation_id(&pool)
        .await
        .expect("the installation id")
        .to_string();

    // Commands spread over both API nodes.
    let entry = a
        .post(
            "/api/v1/catalog",
            json!({
                "name": "replicated",
                "transport": "stdio",
                "runtime": {"type": "docker", "image": image},
                "config_schema": [],
                "resources": {"memory_mb": 64, "cpus": 0.5, "pids": 64}
            }),
        )
        .await["id"]
        .as_str()
        .expect("an entry id")
        .to_owned();
    let mut ids = Vec::new();
    let mut cleanups = Vec::new();
    for i in 0..SERVERS {
        let node = if i % 2 == 0 { &a } else { &b };
        let created = node
            .post(
                "/api/v1/servers",
                json!({"catalog_id": entry, "name": format!("r-{i}")}),
            )
            .await;
        let id = created["id"].as_str().expect("a server id").to_owned();
        cleanups.push(ContainerCleanup::new(format!("berth-{id}")));
        ids.push(id);
    }

    // The bulk start, and the active worker killed in the middle of it.
    let bulk = b
        .post(
            "/api/v1/bulk",
            json!({"operation": "start", "server_ids": ids}),
        )
        .await;
    let bulk_id = bulk["id"].as_str().expect("a bulk id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while containers(&installation_id).len() < 3 {
        assert!(Instant::now() < deadline, "the bulk start never began");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let running_at_kill = server_states(&a, &ids)
        .await
        .values()
        .filter(|s| *s == "running")
        .count();
    w1.kill();
    let killed = Instant::now();
    let taken_over = active_worker_other_than(&pool, "w1", Duration::from_secs(30)).await;
    let failover = killed.elapsed();
    assert_eq!(taken_over.as_deref(), Some("w2"), "the standby takes over");
    eprintln!("the standby took over {failover:?} after the kill; {running_at_kill} of {SERVERS} ran then");
    assert!(
        failover < Duration::from_secs(10),
        "the standby took over after {failover:?}"
    );
    assert!(
        running_at_kill < SERVERS,
        "the kill came after the bulk start finished; nothing was taken over"
    );
    let listed = b.get("/api/v1/nodes").await;
    let active: Vec<&str> = listed["nodes"]
        .as_array()
        .expect("the nodes")
        .iter()
        .filter(|n| n["active"] == true)
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(active, ["w2"], "{listed}");
    assert_eq!(
        listed["nodes"].as_array().map(Vec::len),
        Some(4),
        "{listed}"
    );

    // The standby finishes it: every server runs, once, on the standby.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let states = server_states(&b, &ids).await;
        if states.values().all(|s| s == "running") {
            break;
        }
        assert!(
            !states.values().any(|s| s.starts_with("failed")),
            "a server failed: {states:?}"
        );
        assert!(Instant::now() < deadline, "not all running: {states:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let operation = wait_for_bulk(&a, &bulk_id).await;
    assert_eq!(operation["succeeded"], json!(SERVERS), "{operation}");
    let expected: BTreeSet<String> = ids.iter().map(|id| format!("berth-{id}")).collect();
    let found: Vec<String> = containers(&installation_id);
    assert_eq!(found.len(), SERVERS, "one container per server: {found:?}");
    assert_eq!(found.into_iter().collect::<BTreeSet<_>>(), expected);
    // The standby records its adoptions as it reconciles: read the servers as of the
    // log's head, so a read model a moment behind does not answer for them.
    let head: i64 = pool
        .get()
        .await
        .expect("a connection")
        .query_one("SELECT max(global_position) FROM events", &[])
        .await
        .expect("the head")
        .get(0);
    for id in &ids {
        let server = a
            .get(&format!("/api/v1/servers/{id}?min_position={head}"))
            .await;
        assert_eq!(server["node"], "w2", "{server}");
        let counts = event_counts(&pool, id).await;
        for once in [
            "ServerStartRequested",
            "ServerProvisioningBegan",
            "ServerContainerCreated",
            "ServerRunning",
        ] {
            assert_eq!(counts.get(once), Some(&1), "{id}: {once} in {counts:?}");
        }
        assert!(
            counts.get("ServerAdopted").copied().unwrap_or(0) <= 1,
            "{counts:?}"
        );
        assert!(!counts.contains_key("ServerFailed"), "{counts:?}");
    }

    // The gateway on both API nodes, in one session: the fixture's tool, called through
    // the node that runs it.
    let mut mcp = McpClient::connect_spread(
        &format!("{}/mcp", a.base),
        &token,
        "legacy",
        &[a.origin(), b.origin()],
    )
    .await;
    let names = mcp.tool_names().await;
    assert_eq!(names.len(), SERVERS * 3, "{names:?}");
    for i in 0..4 {
        let answer = mcp
            .call(
                &format!("r-{i}__echo"),
                json!({"text": format!("hello {i}")}),
            )
            .await;
        assert_eq!(
            answer["result"]["content"][0]["text"],
            json!(format!("hello {i}")),
            "{answer}"
        );
    }
    mcp.close().await;

    // A key revoked through one API node stops working on the other within a second.
    let me = a.get("/api/v1/me").await;
    let admin_id = me["id"].as_str().expect("my id").to_owned();
    let key = a
        .post(
            &format!("/api/v1/users/{admin_id}/keys"),
            json!({"name": "short-lived"}),
        )
        .await;
    let (key_id, secret) = (
        key["id"].as_str().expect("a key id").to_owned(),
        key["key"].as_str().expect("a key").to_owned(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while b
        .try_send(Method::GET, "/api/v1/me", None, &secret)
        .await
        .expect("an answer")
        .0
        != StatusCode::OK
    {
        assert!(
            Instant::now() < deadline,
            "the new key never worked on the other node"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.ok(Method::DELETE, &format!("/api/v1/keys/{key_id}"), None)
        .await;
    let revoked = Instant::now();
    loop {
        let (status, _) = b
            .try_send(Method::GET, "/api/v1/me", None, &secret)
            .await
            .expect("an answer");
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "the revoked key still worked on the other node after {:?}",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // An event stream resumed on the other API node gets exactly the later events.
    let (first_seen, last_id) = read_stream(&a, None, 5).await;
    assert_eq!(first_seen.len(), 5);
    let (resumed, _) = read_stream(&b, Some(last_id), 20).await;
    let listed = a
        .get(&format!("/api/v1/events?after={last_id}&limit=20"))
        .await;
    let expected: Vec<i64> = listed["events"]
        .as_array()
        .expect("a page of events")
        .iter()
        .filter_map(|e| e["position"].as_i64())
        .collect();
    assert_eq!(resumed, expected, "resumed after {last_id}");

    // An API node killed under 16 clients sending commands: they go on through the other,
    // and every acknowledged command is in the log.
    let acknowledged = commands_through_a_killed_node(&entry, a.clone(), b.clone(), api1).await;
    assert!(acknowledged.len() >= 16, "{}", acknowledged.len());
    let last = acknowledged
        .iter()
        .map(|(_, at)| *at)
        .max()
        .unwrap_or_default();
    for (id, _) in &acknowledged {
        let (status, server) = b
            .try_send(
                Method::GET,
                &format!("/api/v1/servers/{id}?min_position={last}"),
                None,
                &token,
            )
            .await
            .expect("an answer");
        assert_eq!(
            status,
            StatusCode::OK,
            "an acknowledged server is lost: {server}"
        );
    }

    // With every node stopped, the log verifies and the read models, caught up, equal a
    // clean rebuild.
    for node in [api2, w2] {
        assert!(node.stop().success());
    }
    let verify = berth_command(&installation.first_dir)
        .env("DATABASE_URL", installation.db.url())
        .arg("verify")
        .output()
        .expect("berth verify");
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let projections = berth_projections::Projections::new(installation.db.database(), pool.clone());
    projections.catch_up_all().await.expect("catching up");
    let servers_before = rows(&pool, "servers", "id").await;
    let bulk_before = rows(&pool, "bulk_operations", "id").await;
    for name in ["servers", "bulk"] {
        projections.rebuild(name).await.expect("a rebuild");
    }
    assert_eq!(rows(&pool, "servers", "id").await, servers_before);
    assert_eq!(rows(&pool, "bulk_operations", "id").await, bulk_before);
    drop(cleanups);
}

/// The state of each server, as `node` reads it.
async fn server_states(node: &Node, ids: &[String]) -> BTreeMap<String, String> {
    let mut states = BTreeMap::new();
    for id in ids {
        let server = node.get(&format!("/api/v1/servers/{id}")).await;
        let state = match server["state"].as_str().unwrap_or_default() {
            "failed" => format!("failed: {}", server["last_error"]),
            other => other.to_owned(),
        };
        states.insert(id.clone(), state);
    }
    states
}

/// The node holding the worker lease once `gone` no longer does.
async fn active_worker_other_than(
    pool: &deadpool_postgres::Pool,
    gone: &str,
    within: Duration,
) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        match active_worker(pool, Duration::ZERO).await {
            Some(node) if node != gone => return Some(node),
            _ if Instant::now() >= deadline => return None,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The bulk operation once it is no longer running.
async fn wait_for_bulk(node: &Node, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let operation = node.get(&format!("/api/v1/bulk/{id}")).await;
        if operation["state"] != "running" {
            return operation;
        }
        assert!(Instant::now() < deadline, "still running: {operation}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The positions of the first `count` events of `node`'s event stream (resumed after
/// `last_event_id` when given), and the last one.
async fn read_stream(node: &Node, last_event_id: Option<i64>, count: usize) -> (Vec<i64>, i64) {
    let mut request = node
        .client
        .get(format!("{}/api/v1/events/stream", node.base))
        .bearer_auth(&node.token)
        .timeout(Duration::from_secs(30));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    } else {
        request = request.query(&[("after", "0")]);
    }
    let response = request.send().await.expect("the stream");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut ids = Vec::new();
    while ids.len() < count {
        let chunk = body
            .next()
            .await
            .expect("the stream goes on")
            .expect("a chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let message: String = text.drain(..end + 2).collect();
            if let Some(id) = message
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .and_then(|id| id.trim().parse::<i64>().ok())
            {
                ids.push(id);
            }
        }
    }
    ids.truncate(count);
    let last = *ids.last().expect("an event");
    (ids, last)
}

/// 16 clients creating servers through `a` and `b` in turn; `a`'s process is killed
/// with SIGKILL partway. A request `a` does not answer is sent again to `b`. Answers the
/// id and position of every server whose creation was acknowledged.
async fn commands_through_a_killed_node(
    entry: &str,
    a: Node,
    b: Node,
    a_process: Serve,
) -> Vec<(String, i64)> {
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..16 {
        let (a, b) = (a.clone(), b.clone());
        let acknowledged = acknowledged.clone();
        let sent = sent.clone();
        let entry = entry.to_owned();
        clients.push(tokio::spawn(async move {
            for n in 0..12 {
                let body = json!({"catalog_id": entry, "name": format!("c{client}-{n}")});
                let first = if n % 2 == 0 { &a } else { &b };
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer = match first
                    .try_send(Method::POST, "/api/v1/servers", Some(&body), &a.token)
                    .await
                {
                    Ok(answer) => answer,
                    Err(_) => b
                        .try_send(Method::POST, "/api/v1/servers", Some(&body), &b.token)
                        .await
                        .expect("the other node answers"),
                };
                match answer {
                    (StatusCode::CREATED, created) => {
                        acknowledged.lock().expect("the list").push((
                            created["id"].as_str().unwrap_or_default().to_owned(),
                            created["position"].as_i64().unwrap_or_default(),
                        ))
                    }
                    // The first attempt may have been recorded before its node died.
                    (StatusCode::CONFLICT, _) => {}
                    (status, answer) => panic!("{status}: {answer}"),
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent.load(std::sync::atomic::Ordering::SeqCst) < 60 {
        assert!(Instant::now() < deadline, "the clients did not get going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a_process.kill();
    for client in clients {
        client.await.expect("a client");
    }
    let acknowledged = acknowledged.lock().expect("the list").clone();
    acknowledged
}

/// Ends the database session holding the worker lease, as a database restart or a
/// network fault would; answers whether there was one.
async fn cut_the_lease(pool: &deadpool_postgres::Pool) -> bool {
    let client = pool.get().await.expect("a connection");
    let cut: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' \
             AND granted AND database = (SELECT oid FROM pg_database \
                                         WHERE datname = current_database()) \
             AND ((classid::bigint << 32) | objid::bigint) = hashtextextended('berth.worker', 0)",
            &[],
        )
        .await
        .expect("ending the lease's session")
        .get(0);
    cut == 1
}

/// A process server of the fixture, created and started through `serve`, running; its id.
async fn running_process_server(serve: &Serve, name: &str) -> String {
    let fixture = berth_tests::docker::fixture_binary();
    let entry = serve
        .post(
            "/api/v1/catalog",
            json!({"name": format!("{name}-entry"), "transport": "stdio",
                   "runtime": {"type": "process", "command": fixture.to_string_lossy()}}),
        )
        .await;
    serve
        .running(json!({"catalog_id": entry["id"], "name": name}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_whose_connection_fails_is_taken_again_without_touching_the_servers() {
    let (installation, only) = Installation::first(test_database().await, "all", "only");
    let pool = installation.pool().await;
    let node = Node::of(&only, &installation.token);
    let id = running_process_server(&only, "steady").await;
    assert!(cut_the_lease(&pool).await, "the lease is held");
    // Lost within about a second, taken again at once.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        active_worker(&pool, Duration::from_secs(10))
            .await
            .as_deref(),
        Some("only")
    );
    let counts = event_counts(&pool, &id).await;
    assert_eq!(counts.get("ServerRunning"), Some(&1), "{counts:?}");
    for never in [
        "ServerRelaunched",
        "ServerExited",
        "ServerFailed",
        "ServerStopped",
    ] {
        assert!(!counts.contains_key(never), "{never}: {counts:?}");
    }
    let server = node.get(&format!("/api/v1/servers/{id}")).await;
    assert_eq!(server["state"], "running", "{server}");
    let mut mcp = McpClient::connect(&format!("{}/mcp", node.base), &node.token, "legacy").await;
    let answer = mcp
        .call("steady__echo", json!({"text": "still here"}))
        .await;
    assert_eq!(
        answer["result"]["content"][0]["text"], "still here",
        "{answer}"
    );
    mcp.close().await;
    assert!(only.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_that_loses_its_lease_to_a_standby_ends_what_it_ran_and_stands_by() {
    let (mut installation, first) = Installation::first(test_database().await, "all", "n1");
    let second = installation.another("all", "n2");
    let api = installation.another("api", "a1");
    let pool = installation.pool().await;
    let (one, two) = (
        Node::of(&first, &installation.token),
        Node::of(&second, &installation.token),
    );
    assert_eq!(
        active_worker(&pool, Duration::from_secs(10))
            .await
            .as_deref(),
        Some("n1")
    );
    let id = running_process_server(&second, "moving").await;
    assert_eq!(
        one.get(&format!("/api/v1/servers/{id}")).await["node"],
        "n1"
    );
    // An API node's gateway holds its session with the server through n1.
    let through_api = Node::of(&api, &installation.token);
    let mut mcp = McpClient::connect(
        &format!("{}/mcp", through_api.base),
        &through_api.token,
        "legacy",
    )
    .await;
    let answer = mcp.call("moving__echo", json!({"text": "before"})).await;
    assert_eq!(answer["result"]["content"][0]["text"], "before", "{answer}");
    assert!(cut_the_lease(&pool).await, "the lease is held");
    assert_eq!(
        active_worker_other_than(&pool, "n1", Duration::from_secs(10))
            .await
            .as_deref(),
        Some("n2"),
        "the standby takes the lease the moment it is free"
    );
    // The first gives up what it ran; the second starts it again, once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let server = two.get(&format!("/api/v1/servers/{id}")).await;
        if server["state"] == "running" && server["node"] == "n2" {
            break;
        }
        assert!(Instant::now() < deadline, "not taken over: {server}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        active_worker(&pool, Duration::ZERO).await.as_deref(),
        Some("n2"),
        "the first stands by"
    );
    let counts = event_counts(&pool, &id).await;
    assert_eq!(counts.get("ServerRelaunched"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("ServerRunning"), Some(&2), "{counts:?}");
    // The first node, no longer active, records nothing more about it.
    assert!(!counts.contains_key("ServerAdopted"), "{counts:?}");
    // The API node's session through n1, which answers for no server now, is given up
    // on the first call that finds it closed; the next goes through n2.
    let mut failed = Vec::new();
    for _ in 0..2 {
        let answer = mcp.call("moving__echo", json!({"text": "after"})).await;
        if answer["result"]["content"][0]["text"] == "after" {
            break;
        }
        failed.push(answer);
    }
    assert!(
        failed.len() < 2,
        "the API node kept its session through n1: {failed:?}"
    );
    mcp.close().await;
    // Calls through either node reach the one process, through n2.
    for node in [&one, &two] {
        let mut mcp =
            McpClient::connect(&format!("{}/mcp", node.base), &node.token, "legacy").await;
        let answer = mcp.call("moving__echo", json!({"text": "here"})).await;
        assert_eq!(answer["result"]["content"][0]["text"], "here", "{answer}");
        mcp.close().await;
    }
    for node in [api, second, first] {
        assert!(node.stop().success());
    }
}
