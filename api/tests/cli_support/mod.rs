//! Shared by the tests that drive the built `berth` binary on its embedded cluster: a
//! data directory the cluster's user can reach, one-shot commands, and a running
//! `berth serve` with an admin client.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A directory under /tmp that the unprivileged PostgreSQL user can traverse (its
/// name starts with `prefix`), and the path of a data directory inside it that Berth
/// creates on first use. The directory goes when the guard drops.
pub fn data_dir(prefix: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("permissions");
    let path = dir.path().join("data");
    (dir, path)
}

/// `berth --data-dir <data_dir>`, unaffected by the database, master key and colour
/// settings of the environment the tests run in.
pub fn berth_command(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("BERTH_DATABASE_URL")
        .env_remove("BERTH_MASTER_KEY")
        .env_remove("BERTH_ADMIN_TOKEN")
        .env("NO_COLOR", "1")
        .arg("--data-dir")
        .arg(data_dir);
    command
}

/// Runs `berth args` to its end, with `stdin` on its standard input (none when `None`).
pub fn berth(data_dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = berth_command(data_dir)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running berth");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).expect("writing to berth");
    }
    child.wait_with_output().expect("waiting for berth")
}

/// Runs `berth args`, expects it to succeed, and returns its output.
pub fn succeeded(data_dir: &Path, args: &[&str]) -> Output {
    let out = berth(data_dir, args, None);
    assert!(
        out.status.success(),
        "berth {args:?} failed: {}",
        stderr(&out)
    );
    out
}

/// Runs `berth args`, expects it to succeed, and returns what it printed on stdout.
pub fn ok(data_dir: &Path, args: &[&str]) -> String {
    stdout(&succeeded(data_dir, args))
}

/// Runs `berth args`, expects it to fail, and returns what it said on stderr.
pub fn refused(data_dir: &Path, args: &[&str]) -> String {
    let out = berth(data_dir, args, None);
    assert!(!out.status.success(), "berth {args:?} succeeded");
    stderr(&out)
}

/// What a command printed on standard output, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a command printed on standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running `berth serve` on the data dir with a client holding its admin token;
/// stopped with SIGTERM, or killed if the test ends before stopping it.
pub struct Serve {
    child: Child,
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Serve {
    /// Starts `berth serve --listen 127.0.0.1:0 <args>` and waits until it listens.
    pub fn start(data_dir: &Path, args: &[&str]) -> Serve {
        Self::start_in(data_dir, args, &[])
    }

    /// [`Serve::start`] with `env` set (`DATABASE_URL`, shared keys).
    pub fn start_in(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut child = berth_command(data_dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
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
        // Keep draining so the child never blocks on a full pipe.
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

    /// Sends an admin request, expects a success, and returns the body.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Vec<u8> {
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

    /// `GET path`'s body.
    pub async fn get(&self, path: &str) -> Vec<u8> {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// `GET path`'s JSON answer.
    pub async fn get_json(&self, path: &str) -> Value {
        serde_json::from_slice(&self.get(path).await).expect("a JSON answer")
    }

    /// The JSON answer to `method path` with a JSON `body`.
    pub async fn json(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let bytes = self.send(method, path, Some(body)).await;
        serde_json::from_slice(&bytes).expect("a JSON answer")
    }

    /// The JSON answer to `POST path` with a JSON `body`.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.json(reqwest::Method::POST, path, body).await
    }

    /// Creates the server `body` describes, starts it and waits (60 s at most) until it
    /// runs; returns its id.
    pub async fn running(&self, body: Value) -> String {
        let created = self.post("/api/v1/servers", body).await;
        let id = created["id"].as_str().unwrap_or_default().to_owned();
        // Read-your-writes: the servers read model may not have the new server yet.
        let position = created["position"].as_i64().unwrap_or_default();
        self.send(
            reqwest::Method::POST,
            &format!("/api/v1/servers/{id}/start"),
            None,
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let server = self
                .get_json(&format!("/api/v1/servers/{id}?min_position={position}"))
                .await;
            if server["state"] == "running" {
                return id;
            }
            assert_ne!(server["state"], "failed", "it failed: {server}");
            assert!(Instant::now() < deadline, "never ran: {server}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://ADDR`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// SIGKILL, as a crash would: nothing of Berth's own shutdown runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for berth to exit and returns how it did.
    pub fn stop(mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for berth") {
                return status;
            }
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
