//! Upstream sessions (Berth's MCP client) against the fixture server run as a child process, over stdio and
//! streamable HTTP, well-behaved and misbehaving; and the fixture's own behaviour.

use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_application::runtime::{McpEndpoint, ProbeError, ProbeReport, StdioConnection};
use berth_infrastructure::mcp::{HttpClients, Upstream};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const FIXTURE: &str = env!("CARGO_BIN_EXE_berth-fixture-mcp");
const PATIENCE: Duration = Duration::from_secs(10);

fn fixture(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(FIXTURE);
    command
        .args(args)
        .envs(env.iter().copied())
        .env_remove("PORT")
        // Killed when the test ends, passed or panicked.
        .kill_on_drop(true);
    command
}

/// The fixture over stdio, and the endpoint to probe it.
fn spawn_stdio(args: &[&str], env: &[(&str, &str)]) -> (Child, McpEndpoint) {
    let mut child = fixture(args, env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the fixture");
    let connection = StdioConnection {
        reader: Box::new(child.stdout.take().expect("stdout")),
        writer: Box::new(child.stdin.take().expect("stdin")),
    };
    (child, McpEndpoint::Stdio(connection))
}

/// The fixture over HTTP on a free port (stdin closed from the start: it must not
/// care), and its URL.
async fn spawn_http(args: &[&str]) -> (Child, String) {
    let mut child = fixture(&[&["--http", "0"], args].concat(), &[])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the fixture");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let port = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines
            .next_line()
            .await
            .expect("reading the fixture's stderr")
        {
            if let Some(address) = line.strip_prefix("berth-fixture-mcp: listening on ") {
                return address
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok());
            }
        }
        None
    })
    .await
    .expect("the fixture says where it listens")
    .expect("a port in the fixture's `listening on` line");
    // Keep draining stderr so the fixture never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://127.0.0.1:{port}/mcp"))
}

async fn probe(endpoint: McpEndpoint, timeout: Duration) -> Result<ProbeReport, ProbeError> {
    Upstream::open(endpoint, timeout, &HttpClients::default())
        .await?
        .report(timeout)
        .await
}

fn assert_fixture_report(report: &ProbeReport) {
    assert_eq!(report.protocol_version, "2025-06-18");
    assert_eq!(report.server_info["name"], "berth-fixture-mcp");
    let names: Vec<&str> = report.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["echo", "add", "env_keys"]);
    assert!(report.tools.iter().all(|t| t.description.is_some()));
    assert!(report.latency < PATIENCE);
}

#[tokio::test]
async fn stdio_probe_reports_the_fixture_and_its_tools() {
    let (_child, endpoint) = spawn_stdio(&[], &[]);
    let report = probe(endpoint, PATIENCE).await.expect("probe");
    assert_fixture_report(&report);
}

#[tokio::test]
async fn stdio_probe_skips_noise_and_follows_pages() {
    let (_child, endpoint) = spawn_stdio(&["--noise", "--page-size", "1"], &[]);
    let report = probe(endpoint, PATIENCE).await.expect("probe");
    assert_fixture_report(&report);
}

#[tokio::test]
async fn stdio_server_that_never_answers_times_out() {
    let (_child, endpoint) = spawn_stdio(&["--never-answer"], &[]);
    let started = Instant::now();
    let error = probe(endpoint, Duration::from_millis(400))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProbeError::Timeout {
                step: "initialize",
                ..
            }
        ),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn stdio_server_that_exits_is_closed() {
    let (_child, endpoint) = spawn_stdio(&["--exit-immediately"], &[]);
    let error = probe(endpoint, PATIENCE).await.unwrap_err();
    assert!(
        matches!(error, ProbeError::Closed { step: "initialize" }),
        "{error}"
    );

    // Exiting while the probe waits for an answer, configured through the environment.
    let (_child, endpoint) = spawn_stdio(
        &[],
        &[
            ("FIXTURE_NEVER_ANSWER", "1"),
            ("FIXTURE_EXIT_AFTER_MS", "300"),
        ],
    );
    let error = probe(endpoint, PATIENCE).await.unwrap_err();
    assert!(
        matches!(error, ProbeError::Closed { step: "initialize" }),
        "{error}"
    );
}

#[tokio::test]
async fn stdio_server_that_writes_only_garbage_never_completes_the_handshake() {
    // Lines that are not JSON-RPC are skipped (servers print banners); the process
    // manager reports the server's last output beside this error.
    let (_child, endpoint) = spawn_stdio(&["--garbage"], &[]);
    let error = probe(endpoint, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProbeError::Timeout {
                step: "initialize",
                ..
            } | ProbeError::Closed { step: "initialize" }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn http_probe_reports_the_fixture_with_json_and_event_stream_answers() {
    for args in [&[][..], &["--sse", "--page-size", "2"][..]] {
        let (_child, url) = spawn_http(args).await;
        let report = probe(McpEndpoint::Http(url), PATIENCE)
            .await
            .unwrap_or_else(|e| panic!("probe with {args:?}: {e}"));
        assert_fixture_report(&report);
    }
}

#[tokio::test]
async fn http_server_that_never_answers_times_out() {
    let (_child, url) = spawn_http(&["--never-answer"]).await;
    let error = probe(McpEndpoint::Http(url), Duration::from_millis(400))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProbeError::Timeout {
                step: "initialize",
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn http_server_that_answers_garbage_never_completes_the_handshake() {
    let (_child, url) = spawn_http(&["--garbage"]).await;
    let error = probe(McpEndpoint::Http(url), PATIENCE).await.unwrap_err();
    assert!(
        matches!(
            error,
            ProbeError::Protocol {
                step: "initialize",
                ..
            } | ProbeError::Closed { step: "initialize" }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn http_server_that_went_away_is_closed() {
    let (mut child, url) = spawn_http(&[]).await;
    child.kill().await.expect("killing the fixture");
    let error = probe(McpEndpoint::Http(url), PATIENCE).await.unwrap_err();
    assert!(
        matches!(error, ProbeError::Closed { step: "initialize" }),
        "{error}"
    );
}

/// Writes `requests` as lines to a stdio fixture, closes its stdin, and returns its
/// answers and exit code.
async fn exchange(
    args: &[&str],
    env: &[(&str, &str)],
    requests: &[Value],
) -> (Vec<Value>, Option<i32>) {
    let mut child = fixture(args, env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the fixture");
    let mut stdin = child.stdin.take().expect("stdin");
    for request in requests {
        // The fixture may have exited on purpose already.
        if stdin
            .write_all(format!("{request}\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
    drop(stdin);
    let mut output = String::new();
    let mut stdout = child.stdout.take().expect("stdout");
    let status = tokio::time::timeout(PATIENCE, async {
        stdout
            .read_to_string(&mut output)
            .await
            .expect("reading stdout");
        child.wait().await.expect("waiting for the fixture")
    })
    .await
    .expect("the fixture ends once its stdin closes");
    let answers = output
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON answers"))
        .collect();
    (answers, status.code())
}

fn call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
}

#[tokio::test]
async fn fixture_tools_answer_and_env_keys_shows_names_not_values() {
    let (answers, code) = exchange(
        &[],
        &[("BERTH_TEST_INJECTED", "s3cret-value")],
        &[
            call(1, "echo", json!({"text": "hello"})),
            call(2, "add", json!({"a": 40, "b": 2})),
            call(3, "env_keys", json!({})),
        ],
    )
    .await;
    assert_eq!(code, Some(0), "stdin EOF ends a stdio fixture cleanly");
    assert_eq!(answers[0]["result"]["content"][0]["text"], "hello");
    assert_eq!(answers[1]["result"]["structuredContent"]["sum"], 42);
    let keys = answers[2]["result"]["structuredContent"]["keys"]
        .as_array()
        .unwrap();
    assert!(keys.contains(&json!("BERTH_TEST_INJECTED")));
    assert!(!answers[2].to_string().contains("s3cret-value"));
}

#[tokio::test]
async fn fixture_misbehaves_on_request() {
    let (_, code) = exchange(
        &["--crash-on-call"],
        &[],
        &[call(1, "echo", json!({"text": "x"}))],
    )
    .await;
    assert_eq!(code, Some(101));

    let (_, code) = exchange(&["--exit-immediately"], &[], &[]).await;
    assert_eq!(code, Some(2));

    let mut child = fixture(
        &[],
        &[("FIXTURE_EXIT_AFTER_MS", "100"), ("FIXTURE_EXIT_CODE", "7")],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("starting the fixture");
    // Held open: `wait` would close it, and stdin EOF alone ends the fixture.
    let _stdin = child.stdin.take();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("it exits")
        .unwrap();
    assert_eq!(
        status.code(),
        Some(7),
        "exits on its own while stdin is still open"
    );
}

#[test]
fn the_kit_finds_the_fixture_binary_cargo_built_for_these_tests() {
    let found = berth_tests::docker::fixture_binary();
    assert_eq!(
        found.canonicalize().expect("the fixture binary exists"),
        std::path::Path::new(FIXTURE)
            .canonicalize()
            .expect("cargo built the fixture")
    );
}
