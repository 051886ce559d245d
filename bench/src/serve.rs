//! The real `berth serve`, run as a child process the way users run it: its own data
//! directory, a fresh bench database as its `DATABASE_URL`, a free port on 127.0.0.1,
//! and the bootstrap administrator's key from `<data_dir>/admin-token`.
//!
//! The child never outlives the bench: [`BerthServe::stop`] (or dropping it, also when a
//! scenario fails or panics) sends SIGTERM and kills it if it has not stopped in time,
//! and the kernel sends it SIGTERM should the bench itself die first.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};

use crate::BenchDatabase;

/// How long `berth serve` gets to migrate, bootstrap and start listening.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// How long it gets to stop after SIGTERM before it is killed: its own grace for
/// in-flight requests is 10 s by default.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Log lines kept to explain a failed start.
const LOG_TAIL: usize = 60;

/// How a bench `berth serve` is configured beyond what every bench sets.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// `--runtime`: `process` needs no Docker engine and starts nothing by itself.
    pub runtime: &'static str,
    /// The per-credential rate limit, requests per second; `0` turns it off (load
    /// generators send far more than the default 100/s from one key).
    pub rate_limit_per_second: u32,
    /// Further `BERTH_*` settings, e.g. `("BERTH_POOL_SIZE", "32")`.
    pub env: Vec<(String, String)>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            runtime: "process",
            rate_limit_per_second: 0,
            env: Vec::new(),
        }
    }
}

/// A running `berth serve` child.
pub struct BerthServe {
    child: Child,
    base: String,
    token: String,
    client: reqwest::Client,
    log: Arc<Mutex<VecDeque<String>>>,
    // Removed after the child is gone (field order: dropped after `Drop::drop` ran).
    _dir: tempfile::TempDir,
}

impl BerthServe {
    /// Starts `binary serve` on `database` with `options` and returns once it answers
    /// `GET /healthz` and its admin key is readable.
    pub async fn start(
        binary: &Path,
        database: &BenchDatabase,
        options: &ServeOptions,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("berth-bench-serve-")
            .tempdir_in("/tmp")
            .context("creating a data directory for berth serve")?;
        let data_dir = dir.path().join("data");
        let mut command = Command::new(binary);
        // Settings of the bench's own environment must not leak into the child.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("BERTH_") || key == "RUST_LOG" || key == "DATABASE_URL" {
                command.env_remove(&*key);
            }
        }
        command
            .env("DATABASE_URL", database.url())
            .env(
                "BERTH_RATE_LIMIT_PER_SECOND",
                options.rate_limit_per_second.to_string(),
            )
            .env("NO_COLOR", "1")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .arg("--data-dir")
            .arg(&data_dir)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--runtime",
                options.runtime,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Should the bench die without dropping this (SIGKILL, abort), the child goes too.
        // The signal follows the spawning *thread*: this runs on a runtime worker, which
        // lives as long as the bench's runtime.
        terminate_with_the_bench(&mut command);
        let mut child = command
            .spawn()
            .with_context(|| format!("running {}", binary.display()))?;
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL)));
        let (listening_tx, listening_rx) = std::sync::mpsc::channel();
        let streams: [Option<Box<dyn std::io::Read + Send>>; 2] = [
            child.stdout.take().map(|s| Box::new(s) as Box<_>),
            child.stderr.take().map(|s| Box::new(s) as Box<_>),
        ];
        for stream in streams.into_iter().flatten() {
            let log = Arc::clone(&log);
            let tx = listening_tx.clone();
            // Drains the pipe for the child's whole life, so it never blocks on a full
            // pipe; keeps the last lines.
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(addr) = listening_address(&line) {
                        let _ = tx.send(addr);
                    }
                    let mut log = log
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if log.len() == LOG_TAIL {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            });
        }
        drop(listening_tx);
        let mut serve = Self {
            child,
            base: String::new(),
            token: String::new(),
            client: client_builder()
                .build()
                .context("building the HTTP client")?,
            log,
            _dir: dir,
        };
        serve.base = serve.wait_listening(listening_rx).await?;
        serve.wait_healthy().await?;
        let token_path = data_dir.join("admin-token");
        // Replicas of one installation share the token given in the environment.
        serve.token = match options.env.iter().find(|(k, _)| k == "BERTH_ADMIN_TOKEN") {
            Some((_, token)) => token.clone(),
            None => std::fs::read_to_string(&token_path)
                .with_context(|| format!("reading {}", token_path.display()))?
                .trim()
                .to_owned(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", serve.token))
                .context("the admin token is not a header value")?,
        );
        serve.client = client_builder()
            .default_headers(headers)
            .build()
            .context("building the HTTP client")?;
        Ok(serve)
    }

    async fn wait_listening(
        &mut self,
        listening: std::sync::mpsc::Receiver<String>,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match listening.try_recv() {
                Ok(base) => return Ok(base),
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    anyhow::bail!(
                        "berth serve closed its output before listening{}",
                        self.log_tail()
                    )
                }
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "berth serve exited ({status}) before listening{}",
                    self.log_tail()
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "berth serve did not listen within {START_TIMEOUT:?}{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = format!("{}/healthz", self.base);
        loop {
            if let Ok(response) = self.client.get(&url).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("berth serve exited ({status}){}", self.log_tail());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "berth serve does not answer {url}{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client sending the admin key on every request (cheap to clone; clones share
    /// its connection pool).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The bootstrap administrator's API key.
    pub fn admin_token(&self) -> &str {
        &self.token
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident set size now (VmRSS), in KiB.
    pub fn rss_kb(&self) -> anyhow::Result<u64> {
        status_kb(self.pid(), "VmRSS:")
    }

    /// The most it has been resident since it started (VmHWM), in KiB.
    pub fn peak_rss_kb(&self) -> anyhow::Result<u64> {
        status_kb(self.pid(), "VmHWM:")
    }

    /// The last lines it logged, for error messages.
    pub fn log_tail(&self) -> String {
        let log = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if log.is_empty() {
            String::new()
        } else {
            format!(
                "\n--- last lines of berth serve ---\n{}",
                log.iter().cloned().collect::<Vec<_>>().join("\n")
            )
        }
    }

    /// Sends `method path` with an optional JSON body as the administrator; the JSON
    /// answer, or an error naming the status and body of a non-success.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut request = self.client.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let bytes = response.bytes().await?;
        anyhow::ensure!(
            status.is_success(),
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        serde_json::from_slice(&bytes).with_context(|| format!("{method} {path}: not JSON"))
    }

    /// SIGTERM, then waits for it to exit (killing it after a grace period).
    pub async fn stop(mut self) -> anyhow::Result<ExitStatus> {
        self.terminate();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let status = self.child.wait()?;
                anyhow::bail!("berth serve did not stop within {STOP_TIMEOUT:?} of SIGTERM and was killed ({status})");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, as a crash would: nothing of its own shutdown runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: signals our own child, which is not reaped yet (so the pid is ours).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}

impl Drop for BerthServe {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        self.terminate();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reqwest client builder for talking to a local `berth serve` under load: no proxy,
/// no idle-connection cap (each closed-loop client or stream holds a connection), Nagle
/// off, and no read waiting forever on a server that hangs (live streams send a
/// heartbeat every 15 s, well within the read timeout).
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
}

/// The address in berth's `listening on http://ADDR` log line.
fn listening_address(line: &str) -> Option<String> {
    let at = line.find("listening on http://")?;
    let rest = &line[at + "listening on ".len()..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == '\u{1b}')
        .unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// A `kB` field of `/proc/PID/status`.
fn status_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let status =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in {}", path.display()))
}

/// Makes `command`'s child receive SIGTERM when the bench dies, so no child outlives a
/// bench killed without cleaning up (SIGTERM: `berth serve` then stops what it started).
pub(crate) fn terminate_with_the_bench(command: &mut std::process::Command) {
    berth_infrastructure::child::die_with_parent(command, libc::SIGTERM);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_the_address() {
        let line =
            "2025-01-01T00:00:00Z  INFO berth_api::serve::server: listening on http://127.0.0.1:4321";
        assert_eq!(
            listening_address(line).as_deref(),
            Some("http://127.0.0.1:4321")
        );
        let json = r#"{"message":"listening on http://127.0.0.1:99","level":"INFO"}"#;
        assert_eq!(
            listening_address(json).as_deref(),
            Some("http://127.0.0.1:99")
        );
        assert_eq!(listening_address("starting"), None);
    }

    #[test]
    fn our_own_status_has_a_resident_size() {
        let rss = status_kb(std::process::id(), "VmRSS:").unwrap_or(0);
        let peak = status_kb(std::process::id(), "VmHWM:").unwrap_or(0);
        assert!(rss > 0 && peak >= rss, "rss {rss} peak {peak}");
    }
}
