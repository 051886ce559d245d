//! `berth serve` on its embedded default, stopped with SIGTERM and started again on the
//! same data directory, finds everything it had: same servers, same audit, same events
//! and positions; and it stops its PostgreSQL cluster on the way out.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A running `berth serve`, killed if the test ends before stopping it.
struct Berth {
    child: Child,
    base: String,
    token: String,
}

impl Berth {
    fn start(data_dir: &Path) -> Berth {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("DATABASE_URL")
            .env_remove("BERTH_MASTER_KEY")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("berth starts");
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
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
            let timeout = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(timeout) {
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
                    panic!(
                        "berth did not start listening; output:\n{}",
                        seen.join("\n")
                    );
                }
            }
        };
        // Keep draining so the child never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        let token = std::fs::read_to_string(data_dir.join("admin-token"))
            .expect("admin token written")
            .trim()
            .to_string();
        let mode = std::fs::metadata(data_dir.join("admin-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "admin token is private");
        Berth { child, base, token }
    }

    async fn get(&self, path: &str) -> Value {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "berth exits cleanly on SIGTERM: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "berth did not stop within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
    }
}

/// A data directory under /tmp that the unprivileged PostgreSQL user can traverse.
fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("berth-durability-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("data");
    (dir, path)
}

async fn everything(berth: &Berth, server_id: &str) -> (Value, Value, Value, Value) {
    let server = berth.get(&format!("/api/v1/servers/{server_id}")).await;
    let audit = berth.get("/api/v1/audit?page_size=500").await;
    let events = berth.get("/api/v1/events?limit=1000").await;
    let catalog = berth.get("/api/v1/catalog?page_size=500").await;
    (server, audit, events, catalog)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_the_same_data_dir_finds_everything_it_had() {
    let (_guard, dir) = data_dir();

    let berth = Berth::start(&dir);
    let entry = berth
        .post(
            "/api/v1/catalog",
            json!({
                "name": "durable",
                "description": "survives restarts",
                "transport": "stdio",
                "runtime": { "type": "process", "command": "true" },
                "config_schema": [
                    { "key": "TOKEN", "description": "", "required": true, "secret": true }
                ],
                "resources": {}
            }),
        )
        .await;
    let server = berth
        .post(
            "/api/v1/servers",
            json!({
                "catalog_id": entry["id"],
                "name": "keeper",
                "config": {},
                "secrets": { "TOKEN": "durable-secret-value" }
            }),
        )
        .await;
    let server_id = server["id"].as_str().unwrap().to_string();
    // Disabling involves no runtime, so nothing changes behind the test's back.
    let disabled = berth
        .post(&format!("/api/v1/servers/{server_id}/disable"), json!({}))
        .await;
    let last = disabled["position"].as_i64().unwrap();
    let wait = format!("min_position={last}");
    berth.get(&format!("/api/v1/audit?{wait}")).await;
    berth
        .get(&format!("/api/v1/servers/{server_id}?{wait}"))
        .await;
    berth.get(&format!("/api/v1/catalog?{wait}")).await;
    let before = everything(&berth, &server_id).await;
    assert_eq!(before.0["enabled"], false);
    berth.stop();
    assert!(
        !dir.join("pg").join("postmaster.pid").exists(),
        "the embedded cluster stopped with berth"
    );

    let berth = Berth::start(&dir);
    let after = everything(&berth, &server_id).await;
    assert_eq!(after.0, before.0, "same server");
    assert_eq!(after.1, before.1, "same audit");
    assert_eq!(
        after.2, before.2,
        "same events and positions: the predefined catalog re-sync wrote nothing"
    );
    assert_eq!(after.3, before.3, "same catalog");
    // And it keeps working where it left off.
    let enabled = berth
        .post(&format!("/api/v1/servers/{server_id}/enable"), json!({}))
        .await;
    assert!(enabled["position"].as_i64().unwrap() > last);
    berth.stop();
    assert!(!dir.join("pg").join("postmaster.pid").exists());
}
