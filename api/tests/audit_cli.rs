//! `berth audit list|export` and `berth replay server` on the embedded cluster: what
//! they print is what the API answered before Berth stopped (the same export files byte
//! for byte, the same list entries, the same past server), and bad flags are refused
//! with a message naming them.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn berth_command(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("BERTH_DATABASE_URL")
        .env_remove("BERTH_MASTER_KEY")
        .env("NO_COLOR", "1")
        .arg("--data-dir")
        .arg(data_dir);
    command
}

fn berth(data_dir: &Path, args: &[&str]) -> Output {
    berth_command(data_dir)
        .args(args)
        .output()
        .expect("running berth")
}

fn ok(data_dir: &Path, args: &[&str]) -> String {
    let out = berth(data_dir, args);
    assert!(
        out.status.success(),
        "berth {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `berth args`, expects it to fail, and returns what it said on stderr.
fn refused(data_dir: &Path, args: &[&str]) -> String {
    let out = berth(data_dir, args);
    assert!(!out.status.success(), "berth {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `berth serve` on the data dir, stopped with SIGTERM (killed if the test fails first).
struct Serve {
    child: Child,
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Serve {
    fn start(data_dir: &Path) -> Serve {
        let mut child = berth_command(data_dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--runtime", "process"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("berth starts");
        let (tx, rx) = mpsc::channel();
        let outputs: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for stream in outputs {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = Vec::new();
        let base = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(at) = line.find("listening on http://") {
                        let rest = &line[at + "listening on ".len()..];
                        let end = rest
                            .find(|c: char| c.is_whitespace() || c == '"')
                            .unwrap_or(rest.len());
                        break rest[..end].to_string();
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("berth did not start listening:\n{}", seen.join("\n"));
                }
            }
        };
        std::thread::spawn(move || while rx.recv().is_ok() {});
        let token = std::fs::read_to_string(data_dir.join("admin-token"))
            .expect("the admin token")
            .trim()
            .to_string();
        Serve {
            child,
            base,
            token,
            client: reqwest::Client::new(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Vec<u8> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("berth answers");
        let status = response.status();
        let bytes = response.bytes().await.expect("a body").to_vec();
        assert!(
            status.is_success(),
            "{path}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        bytes
    }

    async fn get(&self, path: &str) -> Vec<u8> {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let bytes = self.send(method, path, Some(body)).await;
        serde_json::from_slice(&bytes).expect("a JSON answer")
    }

    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        while matches!(self.child.try_wait(), Ok(None)) {
            assert!(Instant::now() < deadline, "berth did not stop within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("berth-audit-cli-")
        .tempdir_in("/tmp")
        .expect("a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("permissions");
    let path = dir.path().join("data");
    (dir, path)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// What the API answered before Berth stopped.
struct Answers {
    server_id: String,
    patched_at: i64,
    server_then: Value,
    csv: Vec<u8>,
    jsonl: Vec<u8>,
    server_audit: Value,
}

async fn drive_the_api(serve: &Serve) -> Answers {
    use reqwest::Method;
    let entry = serve
        .json(
            Method::POST,
            "/api/v1/catalog",
            json!({
                "name": "audited",
                "description": "for the audit CLI",
                "transport": "stdio",
                "runtime": { "type": "process", "command": "true" },
                "config_schema": [
                    { "key": "TOKEN", "description": "", "required": true, "secret": true },
                    { "key": "MODE", "description": "", "required": false, "secret": false }
                ],
                "resources": {}
            }),
        )
        .await;
    let server = serve
        .json(
            Method::POST,
            "/api/v1/servers",
            json!({
                "catalog_id": entry["id"],
                "name": "audited-1",
                "config": { "MODE": "a, \"quoted\" value" },
                "secrets": { "TOKEN": "audit-cli-secret" }
            }),
        )
        .await;
    let server_id = server["id"].as_str().expect("an id").to_string();
    let path = format!("/api/v1/servers/{server_id}");
    let patched = serve
        .json(
            Method::PATCH,
            &path,
            json!({ "config": { "MODE": "=formula" } }),
        )
        .await;
    let patched_at = patched["position"].as_i64().expect("a position");
    let mut last = patched_at;
    for action in ["disable", "enable", "disable"] {
        let answer = serve
            .json(Method::POST, &format!("{path}/{action}"), json!({}))
            .await;
        last = answer["position"].as_i64().expect("a position");
    }
    let wait = format!("min_position={last}");
    let server_then =
        serde_json::from_slice(&serve.get(&format!("{path}?at={patched_at}")).await).expect("JSON");
    Answers {
        patched_at,
        server_then,
        csv: serve
            .get(&format!("/api/v1/audit/export?format=csv&{wait}"))
            .await,
        jsonl: serve
            .get(&format!("/api/v1/audit/export?format=jsonl&{wait}"))
            .await,
        server_audit: serde_json::from_slice(
            &serve
                .get(&format!("/api/v1/audit?server_id={server_id}&{wait}"))
                .await,
        )
        .expect("JSON"),
        server_id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_and_replay_commands_print_what_the_api_answered() {
    let (guard, dir) = data_dir();
    let serve = Serve::start(&dir);
    let api = drive_the_api(&serve).await;
    serve.stop();
    let id = api.server_id.as_str();

    // Exports: the same files, byte for byte, to stdout or to a file.
    let csv = ok(&dir, &["audit", "export", "--format", "csv"]);
    assert_eq!(csv.as_bytes(), api.csv.as_slice());
    assert!(csv.starts_with("position,at,actor,action,"), "{csv}");
    let file = guard.path().join("audit.jsonl");
    let file_arg = file.display().to_string();
    ok(
        &dir,
        &[
            "audit", "export", "--format", "jsonl", "--output", &file_arg,
        ],
    );
    let written = std::fs::read(&file).expect("the export file");
    assert_eq!(written, api.jsonl);
    assert!(!guard.path().join("audit.jsonl.partial").exists());
    let lines = json_lines(&String::from_utf8_lossy(&written));
    assert!(lines
        .iter()
        .all(|l| l["event"] == format!("/api/v1/events/{}", l["position"].as_i64().unwrap_or(-1))));
    // Filters narrow exports as they narrow the API's.
    let disables = ok(
        &dir,
        &[
            "audit",
            "export",
            "--action",
            "server.disabled",
            "--server",
            id,
        ],
    );
    let disables = json_lines(&disables);
    assert_eq!(disables.len(), 2);
    assert!(disables.iter().all(|l| l["action"] == "server.disabled"));

    // Lists: the API's page, newest first.
    let listed = json_lines(&ok(&dir, &["audit", "list", "--server", id, "--json"]));
    assert_eq!(
        Value::Array(listed.clone()),
        api.server_audit["items"],
        "berth audit list --json lists what GET /audit lists"
    );
    let limited = json_lines(&ok(
        &dir,
        &["audit", "list", "--server", id, "--limit", "2", "--json"],
    ));
    assert_eq!(limited.as_slice(), &listed[..2]);
    let table = ok(
        &dir,
        &[
            "audit",
            "list",
            "--actor",
            "user:admin",
            "--action",
            "server.config_updated",
            "--from",
            "2000-01-01T00:00:00Z",
            "--to",
            "2999-01-01T00:00:00+01:00",
        ],
    );
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("POSITION"), "{table}");
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows[1].contains(&format!("server/{id}")) && rows[1].contains("user:admin"));
    let none = ok(&dir, &["audit", "list", "--from", "2999-01-01T00:00:00Z"]);
    assert_eq!(none.lines().count(), 1, "{none}");

    // Bad flags are refused, naming the flag, before anything is read.
    for (args, named) in [
        (vec!["audit", "list", "--from", "yesterday"], "--from"),
        (
            vec!["audit", "export", "--to", "2026-13-45T00:00:00Z"],
            "--to",
        ),
        (vec!["audit", "list", "--server", "not-a-uuid"], "--server"),
        (vec!["audit", "list", "--limit", "0"], "--limit"),
        (vec!["audit", "export", "--format", "xml"], "--format"),
        (
            vec![
                "audit",
                "list",
                "--from",
                "2026-02-01T00:00:00Z",
                "--to",
                "2026-01-01T00:00:00Z",
            ],
            "--to",
        ),
        (vec!["replay", "server", id, "--at", "garbage"], "--at"),
    ] {
        let said = refused(&dir, &args);
        assert!(said.contains(named), "berth {args:?} said: {said}");
    }
    let said = refused(&dir, &["audit", "list", "--from", "yesterday"]);
    assert!(said.contains("RFC 3339"), "{said}");

    // Replay: the same past server as `GET /servers/{id}?at=`.
    let at = api.patched_at.to_string();
    let replayed: Value =
        serde_json::from_str(&ok(&dir, &["replay", "server", id, "--at", &at])).expect("JSON");
    assert_eq!(replayed, api.server_then);
    assert_eq!(replayed["config"]["MODE"], "=formula");
    assert_eq!(replayed["secrets"]["TOKEN"], "********");
    let now: Value = serde_json::from_str(&ok(&dir, &["replay", "server", id])).expect("JSON");
    assert_eq!(now["enabled"], false);
    let said = refused(&dir, &["replay", "server", id, "--at", "0"]);
    assert!(said.contains("no server had the id"), "{said}");
}
