//! The official Python MCP SDK as a client of Berth's gateway: a driver process
//! (`tests/python/mcp_gateway_client.py`) holding one session, told what to do one JSON
//! line at a time.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::python_tools::mcp_sdk_python;

/// How long one command may take.
const PATIENCE: Duration = Duration::from_secs(120);

/// One client session with the gateway.
pub struct McpClient {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl McpClient {
    /// Connects to `url` with `token`, negotiating as `mode` says (`legacy`: the
    /// initialize handshake; `auto`: discovery first; or a protocol version).
    ///
    /// # Panics
    /// When the driver cannot start or connect.
    pub async fn connect(url: &str, token: &str, mode: &str) -> Self {
        Self::connect_spread(url, token, mode, &[]).await
    }

    /// [`McpClient::connect`], with each HTTP request sent to the next of `origins`
    /// (`host:port`) in turn, as a load balancer in front of several Berths would.
    ///
    /// # Panics
    /// When the driver cannot start or connect.
    pub async fn connect_spread(url: &str, token: &str, mode: &str, origins: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/mcp_gateway_client.py");
        let mut child = Command::new(mcp_sdk_python())
            .arg(script)
            .arg(url)
            .arg(mode)
            .env("BERTH_TOKEN", token)
            .env("BERTH_SPREAD", origins.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the Python MCP client");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut client = Self {
            child,
            stdin,
            lines,
        };
        let info = client.ask(json!({"op": "info"})).await;
        assert!(info.get("error").is_none(), "connecting: {info}");
        client
    }

    /// Sends one command and returns its answer (`{"error": ...}` when it failed).
    ///
    /// # Panics
    /// When the driver does not answer within two minutes or has exited.
    pub async fn ask(&mut self, command: Value) -> Value {
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("writing to the Python MCP client");
        let answer = tokio::time::timeout(PATIENCE, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no answer to {command} within {PATIENCE:?}"))
            .expect("reading the Python MCP client")
            .unwrap_or_else(|| panic!("the Python MCP client exited before answering {command}"));
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"))
    }

    /// Every tool the gateway lists (all pages).
    pub async fn tools(&mut self) -> Vec<Value> {
        let answer = self.ask(json!({"op": "list"})).await;
        answer["tools"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("listing tools: {answer}"))
    }

    /// The names of [`McpClient::tools`], sorted.
    pub async fn tool_names(&mut self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tools()
            .await
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    /// Calls `name` with `arguments`; the answer is `{"result": ...}` or `{"error": ...}`.
    pub async fn call(&mut self, name: &str, arguments: Value) -> Value {
        self.ask(json!({"op": "call", "name": name, "arguments": arguments}))
            .await
    }

    /// Ends the session (and the driver).
    pub async fn close(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}
