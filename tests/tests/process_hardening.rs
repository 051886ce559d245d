//! The attacks on process servers, replayed through the real HTTP stack, a real
//! PostgreSQL and real child processes: an operator writing a host command into the
//! catalog, a server reading Berth's own files, the owner of a published entry changing
//! what other tenants' servers run, and a server printing its secret into the event log.

mod api_support;

use api_support::{user, TestApp};
use berth_tests::docker::fixture_binary;
use reqwest::Method;
use serde_json::{json, Value};

fn shell_entry(name: &str, script: &str) -> Value {
    json!({
        "name": name,
        "transport": "stdio",
        // Stdio servers speak MCP on stdout and Berth keeps their stderr. Stdout stays
        // open until the script ends, so Berth sees it end, not hang up early.
        "runtime": {"type": "process", "command": "/bin/sh", "args": ["-c", format!("{{ {script}; }} >&2")]},
        "config_schema": [{"key": "API_TOKEN", "required": true, "secret": true}]
    })
}

/// Registers `entry` as the administrator, creates a server of it with `API_TOKEN`
/// set to `secret`, starts it, and returns the server's id.
async fn start_server_of(app: &TestApp, entry: &Value, secret: &str) -> String {
    let entry = app.register(entry).await;
    let id = app
        .create_server(
            &json!({"catalog_id": entry, "name": "probe", "secrets": {"API_TOKEN": secret}}),
        )
        .await;
    app.start(&id).await;
    id
}

#[tokio::test]
async fn only_administrators_write_process_entries() {
    let app = TestApp::spawn().await;
    let operator = user(&app, "opal", "operator").await;
    let as_operator = |method: Method, path: String, body: Value| {
        let app = &app;
        let key = operator.key.clone();
        async move {
            let bytes = serde_json::to_vec(&body).expect("a body");
            app.send(method, &path, Some(bytes), Some(&key), &[]).await
        }
    };
    let process = shell_entry("grab", "cat admin-token; id");
    let before = app.head().await;
    as_operator(Method::POST, "/api/v1/catalog".into(), process.clone())
        .await
        .expect_problem(403);

    // A Docker entry of its own is fine, but it cannot become a process entry.
    let mut docker = process.clone();
    docker["runtime"] = json!({"type": "docker", "image": "berth/fixture:latest"});
    let own = as_operator(Method::POST, "/api/v1/catalog".into(), docker)
        .await
        .expect(201)
        .id();
    let after_docker = app.head().await;
    as_operator(
        Method::PUT,
        format!("/api/v1/catalog/{own}"),
        process.clone(),
    )
    .await
    .expect_problem(403);
    assert_eq!(app.head().await, after_docker, "a refusal writes nothing");
    assert!(after_docker > before);

    // An administrator may.
    app.post("/api/v1/catalog", &process).await.expect(201);
    app.json(Method::PUT, &format!("/api/v1/catalog/{own}"), &process)
        .await
        .expect(202);
    app.stop().await;
}

/// Berth as root: the attack read the admin key, the cluster password and the master
/// key through a process entry, and ran as uid 0. Its server now runs as a user of its
/// own, which may read none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_server_cannot_read_berths_files_nor_run_as_root() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: only root switches server processes to users of their own");
        return;
    }
    let app = TestApp::spawn_with_processes().await;
    let data = app.data_dir().display().to_string();
    let script = format!(
        "echo uid=$(id -u) gid=$(id -g) groups=$(id -G); \
         for f in {data}/admin-token {data}/master.key {data}/pg/superuser.password; do \
           cat \"$f\" >/dev/null 2>&1 && echo \"READ $f\" || echo \"denied $f\"; done; \
         ls {data}/process-logs >/dev/null 2>&1 && echo 'LISTED logs' || echo 'denied logs'; \
         exit 3"
    );
    let id = start_server_of(&app, &shell_entry("peek", &script), "peek-secret-value").await;
    let failed = app.until_state(&id, "failed").await;
    let said = failed["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(said.contains("uid="), "{said}");
    assert!(!said.contains("uid=0 "), "ran as root: {said}");
    assert!(!said.contains("groups=0"), "kept root's groups: {said}");
    assert!(!said.contains("READ"), "read a file of Berth's: {said}");
    assert!(!said.contains("LISTED"), "listed the log directory: {said}");
    assert!(said.contains("denied"), "{said}");
    // The admin key is not anywhere the server could have put it.
    let admin_token =
        std::fs::read_to_string(app.data_dir().join("admin-token")).expect("the admin token");
    assert!(!said.contains(admin_token.trim()));
    app.stop().await;
}

/// The attack: A's published entry, B's server with her secret, then A changes the
/// command and B's next start runs it. B's server runs the version it was created
/// from until B (or an administrator) moves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_entry_never_reaches_another_owners_server_silently() {
    let app = TestApp::spawn_with_processes().await;
    let fixture = fixture_binary().display().to_string();
    let entry = app
        .post(
            "/api/v1/catalog",
            &json!({
                "name": "shared",
                "transport": "stdio",
                "runtime": {"type": "process", "command": fixture},
                "config_schema": [{"key": "API_TOKEN", "required": true, "secret": true}]
            }),
        )
        .await
        .expect(201)
        .id();
    app.command(&format!("/api/v1/catalog/{entry}/publish"))
        .await
        .expect(202);
    let bea = user(&app, "bea", "operator").await;
    let secret = "bea-very-private-token";
    let created = app
        .send(
            Method::POST,
            "/api/v1/servers",
            Some(
                serde_json::to_vec(
                    &json!({"catalog_id": entry, "name": "beas", "secrets": {"API_TOKEN": secret}}),
                )
                .expect("a body"),
            ),
            Some(&bea.key),
            &[],
        )
        .await;
    let id = created.expect(201).id();

    // The entry now says: print the environment and fail.
    let leak = shell_entry("shared", "env; echo \"token is $API_TOKEN\"; exit 4");
    app.json(Method::PUT, &format!("/api/v1/catalog/{entry}"), &leak)
        .await
        .expect(202);
    let as_bea = |path: String| {
        let (app, key) = (&app, bea.key.clone());
        async move { app.send(Method::POST, &path, None, Some(&key), &[]).await }
    };
    as_bea(format!("/api/v1/servers/{id}/start"))
        .await
        .expect(202);
    let running = app.until_state(&id, "running").await;
    assert_eq!(running["catalog_version"], 1, "{running}");
    let logs = app
        .get(&format!("/api/v1/servers/{id}/logs?tail=100"))
        .await;
    assert!(!String::from_utf8_lossy(&logs.body).contains(secret));

    // Moving to the new version is Bea's decision; then it runs, and what it printed
    // reaches the log without her secret.
    as_bea(format!("/api/v1/servers/{id}/upgrade"))
        .await
        .expect(202);
    as_bea(format!("/api/v1/servers/{id}/upgrade"))
        .await
        .expect_problem(409);
    as_bea(format!("/api/v1/servers/{id}/restart"))
        .await
        .expect(202);
    let failed = app.until_state(&id, "failed").await;
    assert_eq!(failed["catalog_version"], 2, "{failed}");
    let said = failed["last_error"].as_str().unwrap_or_default();
    assert!(said.contains("token is [redacted]"), "{said}");
    assert!(!said.contains(secret), "{said}");
    app.stop().await;
}

/// The attack: a server prints its secret (plain and base64) and exits; the plaintext
/// landed in `last_error`, the `ServerFailed` event, history, audit and exports. Every
/// one of them reads from the events, so the store is where to look.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_a_server_prints_reaches_the_event_log_without_its_secrets_and_bounded() {
    let app = TestApp::spawn_with_processes().await;
    let secret = "tok_9f8e7d6c5b4a";
    let script = "echo \"auth failed for token $API_TOKEN\"; \
                  printf 'Basic %s\\n' \"$(printf 'user:%s' \"$API_TOKEN\" | base64)\"; \
                  head -c 20000 /dev/zero | tr '\\0' 'y'; echo; exit 1";
    let id = start_server_of(&app, &shell_entry("talker", script), secret).await;
    let failed = app.until_state(&id, "failed").await;
    let said = failed["last_error"].as_str().unwrap_or_default();
    assert!(said.contains("auth failed for token [redacted]"), "{said}");
    assert!(
        said.len() <= berth_domain::server::MAX_REASON_BYTES,
        "{} bytes",
        said.len()
    );

    app.feed_settled().await;
    let sql = app.sql().await;
    let encoded = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("user:{secret}"))
    };
    let core = &encoded[8..encoded.len() - 4];
    for (what, query) in [
        (
            "events",
            "SELECT count(*) FROM events WHERE payload::text LIKE '%' || $1 || '%'",
        ),
        (
            "servers",
            "SELECT count(*) FROM servers WHERE coalesce(last_error, '') LIKE '%' || $1 || '%'",
        ),
        (
            "audit",
            "SELECT count(*) FROM audit_log WHERE summary LIKE '%' || $1 || '%'",
        ),
    ] {
        for needle in [secret, core] {
            let found: i64 = sql
                .query_one(query, &[&needle])
                .await
                .expect("searching")
                .get(0);
            assert_eq!(found, 0, "{needle} found in {what}");
        }
    }
    let export = app.get("/api/v1/audit/export?format=jsonl").await;
    assert!(!String::from_utf8_lossy(&export.body).contains(secret));
    let history = app.get(&format!("/api/v1/servers/{id}/history")).await;
    assert!(!String::from_utf8_lossy(&history.body).contains(secret));
    app.stop().await;
}
