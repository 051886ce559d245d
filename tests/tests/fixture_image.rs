//! The fixture MCP server as a container image, built locally by the test kit: it
//! answers MCP on stdin, takes its misbehaviour flags from the environment, and serves
//! streamable HTTP. Every container started here is removed, pass or fail.

use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_application::runtime::{McpEndpoint, StdioConnection};
use berth_infrastructure::mcp::{HttpClients, Upstream};
use berth_tests::docker::{
    fixture_image, remove_stale_fixture_images, require_docker, ContainerCleanup,
    FIXTURE_REPOSITORY,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const PATIENCE: Duration = Duration::from_secs(30);

fn container_name(purpose: &str) -> String {
    format!(
        "berth-test-fixture-{purpose}-{}",
        uuid::Uuid::new_v4().simple()
    )
}

/// `docker …`, expecting success; its standard output, trimmed.
async fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("running docker");
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test]
async fn the_image_answers_initialize_on_stdin() {
    if !require_docker() {
        return;
    }
    let image = fixture_image().await;
    let cleanup = ContainerCleanup::new(container_name("stdio"));
    let mut child = Command::new("docker")
        .args(["run", "-i", "--rm", "--name", cleanup.name(), &image])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("docker run");
    let mut stdin = child.stdin.take().expect("stdin");
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "berth-test", "version": "0"}}
    });
    stdin
        .write_all(format!("{initialize}\n").as_bytes())
        .await
        .expect("writing to the container");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("an answer in time")
        .expect("reading the container's stdout")
        .expect("a line before the container ends");
    let answer: Value = serde_json::from_str(&line).expect("a JSON answer");
    assert_eq!(answer["id"], 1);
    assert_eq!(answer["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(answer["result"]["serverInfo"]["name"], "berth-fixture-mcp");

    // Closing stdin ends the server, and --rm the container.
    drop(stdin);
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the container ends once stdin closes")
        .expect("docker run");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn the_probe_speaks_to_the_image_over_attached_stdio() {
    if !require_docker() {
        return;
    }
    let image = fixture_image().await;
    let cleanup = ContainerCleanup::new(container_name("probe"));
    let mut child = Command::new("docker")
        .args(["run", "-i", "--rm", "--name", cleanup.name()])
        .args(["-e", "FIXTURE_PAGE_SIZE=1", &image])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("docker run");
    let endpoint = McpEndpoint::Stdio(StdioConnection {
        reader: Box::new(child.stdout.take().expect("stdout")),
        writer: Box::new(child.stdin.take().expect("stdin")),
    });
    let upstream = Upstream::open(endpoint, PATIENCE, &HttpClients::default())
        .await
        .expect("opening a session with the container");
    let report = upstream
        .report(PATIENCE)
        .await
        .expect("asking for its tools");
    drop(upstream);
    let names: Vec<&str> = report.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["echo", "add", "env_keys"]);
    // The probe dropped the container's stdin: the server exits on its own.
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the container ends once stdin closes")
        .expect("docker run");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn the_image_takes_its_flags_from_the_environment() {
    if !require_docker() {
        return;
    }
    let image = fixture_image().await;
    let cleanup = ContainerCleanup::new(container_name("exit"));
    let mut child = Command::new("docker")
        .args(["run", "-i", "--name", cleanup.name()])
        .args([
            "-e",
            "FIXTURE_EXIT_AFTER_MS=200",
            "-e",
            "FIXTURE_EXIT_CODE=7",
            &image,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("docker run");
    // Held open, so only the flag can end the server.
    let _stdin = child.stdin.take();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the container exits on its own")
        .expect("docker run");
    assert_eq!(status.code(), Some(7));
    let state = docker(&["inspect", "--format", "{{.State.ExitCode}}", cleanup.name()]).await;
    assert_eq!(state, "7");
}

#[tokio::test]
async fn the_image_serves_http_and_stops_promptly() {
    if !require_docker() {
        return;
    }
    let image = fixture_image().await;
    let cleanup = ContainerCleanup::new(container_name("http"));
    docker(&[
        "run",
        "-d",
        "--name",
        cleanup.name(),
        "-e",
        "PORT=8080",
        &image,
    ])
    .await;
    let address = docker(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        cleanup.name(),
    ])
    .await;
    assert!(!address.is_empty(), "the container has an IP address");
    let url = format!("http://{address}:8080/mcp");
    let started = Instant::now();
    let report = loop {
        // The server needs a moment to listen after the container starts.
        let timeout = Duration::from_secs(5);
        let attempt = match Upstream::open(
            McpEndpoint::Http(url.clone()),
            timeout,
            &HttpClients::default(),
        )
        .await
        {
            Ok(upstream) => upstream.report(timeout).await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(report) => break report,
            Err(e) if started.elapsed() < PATIENCE => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("probing {url}: {e}"),
        }
    };
    assert_eq!(report.server_info["name"], "berth-fixture-mcp");
    assert_eq!(report.tools.len(), 3);

    // As PID 1 the server must handle SIGTERM itself, or `docker stop` waits 10 s.
    let stopping = Instant::now();
    docker(&["stop", "--time", "10", cleanup.name()]).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
}

/// An image of the fixture's name that a person made (the README's
/// `berth-fixture-mcp:dev`) is never removed by the test kit's clean-up of its own old
/// images.
#[tokio::test]
async fn the_test_kit_removes_only_images_it_made() {
    if !require_docker() {
        return;
    }
    let current = fixture_image().await;
    let theirs = format!(
        "{FIXTURE_REPOSITORY}:person-{}",
        uuid::Uuid::new_v4().simple()
    );
    // An image with nothing in it, imported the way a person would, without the label.
    let mut import = std::process::Command::new("docker")
        .args(["import", "-", &theirs])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("running docker import");
    {
        use std::io::Write;
        // An empty tar archive: two zero blocks.
        let mut stdin = import.stdin.take().expect("stdin");
        stdin.write_all(&[0u8; 1024]).expect("writing the archive");
    }
    assert!(import.wait().expect("docker import").success());

    remove_stale_fixture_images(&current);
    let kept = Command::new("docker")
        .args(["image", "inspect", &theirs])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("running docker")
        .status
        .success();
    docker(&["rmi", &theirs]).await;
    assert!(kept, "the test kit removed {theirs}, which it did not make");
}
