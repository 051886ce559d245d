//! `berth events tail`, the built binary against a running `berth serve`: it prints one
//! line per event from `--after 0`, follows new ones live, rides out a restart of the
//! server without missing or repeating an event, prints JSON lines with `--json`, and
//! exits non-zero with a clear message when its token is refused or missing.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// A child process whose output lines arrive on channels; killed if the test ends first.
struct Running {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Running {
    fn spawn(args: &[&str], data_dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("DATABASE_URL")
            .env_remove("BERTH_MASTER_KEY")
            .env_remove("BERTH_TOKEN")
            .env_remove("BERTH_URL")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("berth starts");
        let stdout = lines_of(child.stdout.take().expect("stdout"));
        let stderr = lines_of(child.stderr.take().expect("stderr"));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// The next line on standard output.
    fn line(&self) -> String {
        self.stdout.recv_timeout(WAIT).unwrap_or_else(|_| {
            let errors: Vec<String> = self.stderr.try_iter().collect();
            panic!("no output line; stderr:\n{}", errors.join("\n"))
        })
    }

    /// Waits for a line on standard error containing `text`; returns it.
    fn stderr_containing(&self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("nothing on stderr contains `{text}`"),
            }
        }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signalling");
    }

    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting") {
                return status;
            }
            assert!(Instant::now() < deadline, "berth did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
    }
}

fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// `berth serve` on the embedded cluster, on a fixed port so a restart keeps its address.
fn serve(data_dir: &Path, port: u16) -> Running {
    let listen = format!("127.0.0.1:{port}");
    let server = Running::spawn(
        &["serve", "--listen", &listen, "--runtime", "process"],
        data_dir,
    );
    server.stderr_containing("listening on http://");
    server
}

/// A data directory under /tmp that the unprivileged PostgreSQL user can traverse.
fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("berth-tail-")
        .tempdir_in("/tmp")
        .expect("a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("permissions");
    let path = dir.path().join("data");
    (dir, path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn api(base: &str, token: &str, method: reqwest::Method, path: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the request is answered");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.expect("a JSON answer")
}

async fn events(base: &str, token: &str, query: &str) -> Vec<Value> {
    let page = api(
        base,
        token,
        reqwest::Method::GET,
        &format!("/api/v1/events?limit=1000&{query}"),
        Value::Null,
    )
    .await;
    page["events"].as_array().cloned().unwrap_or_default()
}

/// The line `berth events tail` prints for `event`.
fn line_of(event: &Value) -> String {
    format!(
        "{} {} {}/{} {}",
        event["position"],
        event["event_type"].as_str().unwrap_or("-"),
        event["aggregate_type"].as_str().unwrap_or("-"),
        event["aggregate_id"].as_str().unwrap_or("-"),
        event["metadata"]["actor"].as_str().unwrap_or("-"),
    )
}

fn entry(name: &str) -> Value {
    json!({
        "name": name,
        "description": "for the tail test",
        "transport": "stdio",
        "runtime": { "type": "process", "command": "true" },
        "config_schema": [],
        "resources": {}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_every_event_once_across_a_server_restart() {
    let (_guard, dir) = data_dir();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = serve(&dir, port);
    let token = std::fs::read_to_string(dir.join("admin-token"))
        .expect("the admin token")
        .trim()
        .to_string();

    // The token comes from <data_dir>/admin-token by default.
    let mut tail = Running::spawn(&["events", "tail", "--after", "0", "--url", &base], &dir);
    let history = events(&base, &token, "").await;
    assert!(!history.is_empty(), "the shipped catalog was registered");
    let mut printed = Vec::new();
    for _ in &history {
        printed.push(tail.line());
    }
    let created = api(
        &base,
        &token,
        reqwest::Method::POST,
        "/api/v1/catalog",
        entry("before-restart"),
    )
    .await;
    printed.push(tail.line());
    assert!(
        printed[printed.len() - 1].ends_with(&format!(
            " CatalogEntryRegistered catalog_entry/{} user:admin",
            created["id"].as_str().expect("id")
        )),
        "{printed:?}"
    );

    // The server goes away and comes back: tail says so and carries on where it was.
    drop(server);
    tail.stderr_containing("reconnecting after event");
    let _server = serve(&dir, port);
    api(
        &base,
        &token,
        reqwest::Method::POST,
        "/api/v1/catalog",
        entry("after-restart"),
    )
    .await;
    let all = events(&base, &token, "").await;
    while printed.len() < all.len() {
        printed.push(tail.line());
    }
    let expected: Vec<String> = all.iter().map(line_of).collect();
    assert_eq!(printed, expected, "every event once, in order");

    tail.signal(nix::sys::signal::Signal::SIGINT);
    assert!(tail.wait().success(), "Ctrl-C ends tail cleanly");
    assert!(
        tail.stdout.try_iter().next().is_none(),
        "no event printed twice"
    );

    // --json with a filter: the event objects themselves.
    let registered = events(&base, &token, "event_type=CatalogEntryRegistered").await;
    let json_tail = Running::spawn(
        &[
            "events",
            "tail",
            "--json",
            "--type",
            "CatalogEntryRegistered",
            "--url",
            &base,
        ],
        &dir,
    );
    for expected in &registered {
        let line: Value = serde_json::from_str(&json_tail.line()).expect("a JSON line");
        assert_eq!(&line, expected);
    }

    // A refused token: a clear message and a failure status, no retrying.
    let wrong = dir.join("wrong-token");
    std::fs::write(&wrong, "berth_not_the_token\n").expect("writing a token file");
    let wrong = wrong.to_str().expect("a UTF-8 path");
    let mut refused = Running::spawn(
        &["events", "tail", "--url", &base, "--token-file", wrong],
        &dir,
    );
    let message = refused.stderr_containing("error:");
    assert!(
        message.contains("401") && message.contains("token"),
        "{message}"
    );
    assert!(!refused.wait().success(), "a refused token is a failure");

    let mut missing = Running::spawn(
        &[
            "events",
            "tail",
            "--url",
            &base,
            "--token-file",
            "/nonexistent/token",
        ],
        &dir,
    );
    let message = missing.stderr_containing("error:");
    assert!(message.contains("/nonexistent/token"), "{message}");
    assert!(!missing.wait().success(), "a missing token is a failure");
}

/// Without `--url`, `events tail` finds the `berth serve` of its data directory wherever
/// it listens (it used to retry 127.0.0.1:7070 forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_finds_berth_on_a_non_default_port() {
    let (_guard, dir) = data_dir();
    let port = free_port();
    let server = serve(&dir, port);
    let tail = Running::spawn(&["events", "tail", "--after", "0", "--json"], &dir);
    let first: Value = serde_json::from_str(&tail.line()).expect("an event as JSON");
    assert_eq!(first["position"], 1, "{first}");
    drop(tail);
    drop(server);
    assert!(
        !dir.join("berth.url").exists(),
        "a stopped Berth leaves no address behind"
    );
}
