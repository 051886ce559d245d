//! Runtime overhead: starting N fixture MCP servers through Berth against `docker run`
//! of the same image, in the same run.
//!
//! - Berth: the real `berth serve --runtime docker` as a child, a catalog entry whose
//!   image is the fixture, N servers, and a `start` command sent for all of them at
//!   once. Each server is timed from its `start` request to its `ServerRunning` event on
//!   the live stream; Berth records that only once the container runs *and* answered
//!   the MCP handshake. The total ends when the servers read model shows all N running.
//! - Baselines: N containers of the same image with the hardening Berth asks for, all
//!   at once, each timed until it answered the same handshake (`initialize`,
//!   `notifications/initialized`, `tools/list`) on its stdin and stdout: started with
//!   `docker run -i` (what users compare with), and through the engine's API (create,
//!   attach, start: what Berth's runtime itself calls, so the gap is Berth's own).
//!
//! Every container any side creates is removed, also when the scenario fails.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, Context};
use berth_tests::docker::{docker_available, fixture_image};
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{AttachContainerOptions, CreateContainerOptions};
use bollard::Docker;
use futures_util::future::join_all;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, Lines,
};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::io::StreamReader;
use uuid::Uuid;

use crate::report::Figure;
use crate::serve::{BerthServe, ServeOptions};
use crate::stats::Latencies;
use crate::Bench;

const SCENARIO: &str = "runtime";

/// How long either side gets to have every server answering.
const DEADLINE: Duration = Duration::from_secs(120);

/// What Berth's Docker runtime asks of every container (`infrastructure`'s
/// `runtime/docker/config.rs`), given to the baseline too so that both start the same
/// kind of container.
const HARDENING: [&str; 16] = [
    "--init",
    "--read-only",
    "--tmpfs",
    "/tmp:rw,nosuid,nodev,size=64m",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--restart",
    "no",
    "--log-driver",
    "json-file",
    "--log-opt",
    "max-size=10m",
    "--log-opt",
    "max-file=3",
];

/// Runs the scenario.
pub async fn run(bench: &Bench<'_>) -> anyhow::Result<()> {
    if !tokio::task::spawn_blocking(docker_available).await? {
        anyhow::ensure!(
            std::env::var("BERTH_REQUIRE_DOCKER").map_or(true, |v| v != "1"),
            "BERTH_REQUIRE_DOCKER=1 but no Docker engine answers `docker info`"
        );
        bench.report.note(SCENARIO, "skipped: no Docker engine");
        return Ok(());
    }
    let binary = bench.berth_binary.clone().context(
        "no berth binary to measure: build it (cargo build --release -p berth-api) or pass --berth",
    )?;
    // `fixture_image` panics on failure; a task turns that into an error.
    let image = tokio::spawn(fixture_image())
        .await
        .map_err(|e| anyhow!("building the fixture image failed: {e}"))?;
    let count = bench.scale.runtime_servers;
    let engine = Docker::connect_with_defaults()
        .context("connecting to the Docker engine")?
        .negotiate_version()
        .await
        .context("reaching the Docker engine")?;
    let containers = Containers::default();

    let side = baseline_side(Baseline::Engine(&engine), &image, count, &containers);
    let mut engine = containers.removed_after(side).await?;
    let side = baseline_side(Baseline::DockerRun, &image, count, &containers);
    let mut docker = containers.removed_after(side).await?;
    let db = bench.server.database("runtime", true).await?;
    let side = berth_side(&binary, &db, &image, count, &containers);
    let berth = containers.removed_after(side).await;
    db.remove().await?;
    let (mut berth, phases) = berth?;

    // Against `docker run` as users would compare, and against the engine API alone,
    // which is what Berth itself calls: the second is Berth's own overhead.
    for (suffix, baseline_name, baseline) in [
        ("", "docker run", &mut docker),
        (", vs engine API", "engine API", &mut engine),
    ] {
        bench.report.add(
            Figure::new(
                SCENARIO,
                format!("Berth: start {count} servers (to running){suffix}"),
                "s",
                berth.total.as_secs_f64(),
                count as u64,
            )
            .against(
                format!("{baseline_name} {count} (to answering)"),
                baseline.total.as_secs_f64(),
            ),
        );
        for p in [50.0, 99.0] {
            bench.report.add(
                Figure::new(
                    SCENARIO,
                    format!("Berth: per server start → running p{p}{suffix}"),
                    "ms",
                    berth.latencies.percentile_ms(p),
                    count as u64,
                )
                .against(
                    format!("{baseline_name}: per container p{p}"),
                    baseline.latencies.percentile_ms(p),
                ),
            );
        }
    }
    bench.report.note(
        SCENARIO,
        "baselines, all N at once, each container timed until it answered initialize + \
         tools/list on stdin/stdout as Berth's probe asks, with Berth's hardening (--init, \
         --read-only, tmpfs /tmp, cap-drop ALL, no-new-privileges): `docker run -i`, and \
         create + attach + start through the engine API (bollard, what Berth's runtime calls)",
    );
    bench.report.note(SCENARIO, &phases);
    Ok(())
}

/// One side's timings.
struct Timings {
    /// From the first start to the last server answering.
    total: Duration,
    /// Each server's own start → answering.
    latencies: Latencies,
}

/// Names of the containers created so far; removes them (`docker rm -f -v`) on
/// [`Containers::remove_all`] or, should the scenario not get there, on drop.
#[derive(Default)]
struct Containers {
    names: Mutex<Vec<String>>,
}

impl Containers {
    /// Records `name` before the container is created, so a failed run removes it too.
    fn add(&self, name: String) {
        self.lock().push(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Awaits `side`, then removes every container it created (whether it succeeded or
    /// not); the side's result, or the removal's error.
    async fn removed_after<T>(
        &self,
        side: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let result = side.await;
        let removed = self.remove_all().await;
        let result = result?;
        removed?;
        Ok(result)
    }

    /// Removes every container recorded and checks that none is left.
    async fn remove_all(&self) -> anyhow::Result<()> {
        let names = std::mem::take(&mut *self.lock());
        if names.is_empty() {
            return Ok(());
        }
        // `docker rm -f` of a container that never was says so and fails; that is fine,
        // what counts is that none of them exists afterwards.
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v"])
            .args(&names)
            .stdin(Stdio::null())
            .output()
            .await
            .context("running docker rm")?;
        let listed = Command::new("docker")
            .args(["ps", "-a", "--format", "{{.Names}}"])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running docker ps")?;
        let listed = String::from_utf8_lossy(&listed.stdout);
        let left: Vec<&str> = listed
            .lines()
            .filter(|l| names.iter().any(|n| n == l))
            .collect();
        anyhow::ensure!(left.is_empty(), "containers left behind: {left:?}");
        Ok(())
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.lock());
        if !names.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&names)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

// ---------------------------------------------------------------------------------
// The baselines: `docker run -i`, and the engine's API, each followed by the handshake
// over the container's stdin and stdout.

/// What keeps a baseline container answering until it is removed.
type Session = Box<dyn Send>;

/// How a baseline starts one container, timed until it answered the handshake.
#[derive(Clone, Copy)]
enum Baseline<'a> {
    /// `docker run -i`.
    DockerRun,
    /// Create, attach and start through the engine's API, as Berth's runtime does.
    Engine(&'a Docker),
}

async fn baseline_side(
    baseline: Baseline<'_>,
    image: &str,
    count: usize,
    containers: &Containers,
) -> anyhow::Result<Timings> {
    let run = Uuid::new_v4().simple().to_string();
    let name = |n: &str| format!("berth-bench-{}-{n}", &run[..12]);
    // Untimed: the engine's first container after a while is slower than the rest.
    let warm = name("warm-up");
    containers.add(warm.clone());
    let (_, warm_session) = baseline.start(image, &warm).await?;

    let names: Vec<String> = (0..count).map(|n| name(&n.to_string())).collect();
    for n in &names {
        containers.add(n.clone());
    }
    let started = Instant::now();
    let runs = join_all(names.iter().map(|n| baseline.start(image, n))).await;
    let total = started.elapsed();
    let mut latencies = Latencies::new();
    let mut sessions = vec![warm_session];
    for run in runs {
        let (took, session) = run?;
        latencies.record(took);
        sessions.push(session);
    }
    Ok(Timings { total, latencies })
}

impl Baseline<'_> {
    /// Starts `image` as `name`; how long until it answered the handshake.
    async fn start(self, image: &str, name: &str) -> anyhow::Result<(Duration, Session)> {
        let started = Instant::now();
        let session = match self {
            Self::DockerRun => docker_run(image, name).await,
            Self::Engine(docker) => engine_run(docker, image, name).await,
        }
        .with_context(|| format!("starting container {name}"))?;
        Ok((started.elapsed(), session))
    }
}

async fn docker_run(image: &str, name: &str) -> anyhow::Result<Session> {
    let mut child = Command::new("docker")
        .args(["run", "-i", "--name", name])
        .args(HARDENING)
        .arg(image)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running docker run")?;
    let mut stdin = child.stdin.take().context("docker run: no stdin")?;
    let stdout = child.stdout.take().context("docker run: no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    match tokio::time::timeout(DEADLINE, handshake(&mut stdin, &mut lines)).await {
        Ok(Ok(())) => Ok(Box::new((child, stdin))),
        Ok(Err(e)) => {
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), err.read_to_string(&mut stderr))
                        .await;
            }
            Err(e.context(format!("docker run said: {}", stderr.trim())))
        }
        Err(_) => anyhow::bail!("no handshake answer within {DEADLINE:?}"),
    }
}

async fn engine_run(docker: &Docker, image: &str, name: &str) -> anyhow::Result<Session> {
    let create = CreateContainerOptions {
        name: Some(name.to_owned()),
        ..Default::default()
    };
    docker
        .create_container(Some(create), container_body(image))
        .await
        .context("creating the container")?;
    // Attached before it starts, as `docker run` does, so no answer can be missed.
    let attach = AttachContainerOptions {
        stdin: true,
        stdout: true,
        stderr: false,
        stream: true,
        logs: false,
        ..Default::default()
    };
    let attached = docker
        .attach_container(name, Some(attach))
        .await
        .context("attaching to the container")?;
    docker
        .start_container(name, None)
        .await
        .context("starting the container")?;
    let stdout = attached.output.filter_map(|frame| async move {
        match frame {
            Ok(LogOutput::StdOut { message }) => Some(Ok(message)),
            Ok(_) => None,
            Err(e) => Some(Err(std::io::Error::other(e))),
        }
    });
    let mut lines = BufReader::new(StreamReader::new(Box::pin(stdout))).lines();
    let mut stdin = attached.input;
    tokio::time::timeout(DEADLINE, handshake(&mut stdin, &mut lines))
        .await
        .map_err(|_| anyhow!("no handshake answer within {DEADLINE:?}"))??;
    Ok(Box::new(stdin))
}

/// The container Berth's Docker runtime creates for a stdio server without limits.
fn container_body(image: &str) -> ContainerCreateBody {
    let host_config = HostConfig {
        privileged: Some(false),
        cap_drop: Some(vec!["ALL".to_owned()]),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_owned(),
            "rw,nosuid,nodev,size=64m".to_owned(),
        )])),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        init: Some(true),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".to_owned()),
            config: Some(HashMap::from([
                ("max-size".to_owned(), "10m".to_owned()),
                ("max-file".to_owned(), "3".to_owned()),
            ])),
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(image.to_owned()),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(false),
        tty: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// The handshake Berth's probe does: `initialize`, `notifications/initialized`,
/// `tools/list`.
async fn handshake<W, R>(stdin: &mut W, lines: &mut Lines<R>) -> anyhow::Result<()>
where
    W: AsyncWrite + Unpin,
    R: AsyncBufRead + Unpin,
{
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "berth-bench", "version": env!("CARGO_PKG_VERSION")},
    }});
    send(stdin, &initialize).await?;
    answer(lines, 1).await?;
    send(
        stdin,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await?;
    send(
        stdin,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await?;
    let tools = answer(lines, 2).await?;
    anyhow::ensure!(
        tools["tools"].as_array().is_some_and(|t| !t.is_empty()),
        "tools/list answered no tools: {tools}"
    );
    Ok(())
}

async fn send<W: AsyncWrite + Unpin>(stdin: &mut W, message: &Value) -> anyhow::Result<()> {
    let mut line = message.to_string().into_bytes();
    line.push(b'\n');
    stdin.write_all(&line).await?;
    stdin.flush().await?;
    Ok(())
}

/// The result of the response to request `id`, skipping anything else.
async fn answer<R: AsyncBufRead + Unpin>(lines: &mut Lines<R>, id: u64) -> anyhow::Result<Value> {
    while let Some(line) = lines.next_line().await? {
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if message["id"] == id {
            return message
                .get("result")
                .cloned()
                .ok_or_else(|| anyhow!("request {id} failed: {message}"));
        }
    }
    anyhow::bail!("the server closed its stdout before answering request {id}")
}

// ---------------------------------------------------------------------------------
// Berth: `berth serve --runtime docker`, commands through its API, events on its live
// stream.

/// Berth's timings and where its time went.
async fn berth_side(
    binary: &std::path::Path,
    db: &crate::BenchDatabase,
    image: &str,
    count: usize,
    containers: &Containers,
) -> anyhow::Result<(Timings, String)> {
    let options = ServeOptions {
        runtime: "docker",
        ..ServeOptions::default()
    };
    let serve = BerthServe::start(binary, db, &options).await?;
    let measured = berth_starts(&serve, db, image, count, containers).await;
    let stopped = serve.stop().await;
    let measured = measured?;
    stopped.context("stopping berth serve")?;
    Ok(measured)
}

async fn berth_starts(
    serve: &BerthServe,
    db: &crate::BenchDatabase,
    image: &str,
    count: usize,
    containers: &Containers,
) -> anyhow::Result<(Timings, String)> {
    use reqwest::Method;
    let entry = serve
        .send_json(
            Method::POST,
            "/api/v1/catalog",
            Some(&json!({
                "name": "fixture",
                "description": "the fixture MCP server",
                "transport": "stdio",
                "runtime": {"type": "docker", "image": image},
            })),
        )
        .await?;
    let entry_id = entry["id"]
        .as_str()
        .context("catalog entry without id")?
        .to_owned();
    let mut ids = Vec::with_capacity(count + 1);
    let mut position = 0;
    for n in 0..=count {
        let created = serve
            .send_json(
                Method::POST,
                "/api/v1/servers",
                Some(&json!({"catalog_id": entry_id, "name": format!("fixture-{n}")})),
            )
            .await?;
        let id: Uuid = serde_json::from_value(created["id"].clone()).context("server id")?;
        position = created["position"].as_i64().unwrap_or(position);
        containers.add(format!("berth-{id}"));
        ids.push(id);
    }
    let mut events = ServerEvents::open(serve, position).await?;

    // Untimed, as for the baseline: the first start also warms Berth's paths.
    let warm = ids.remove(0);
    start(serve, warm).await?;
    events.until_running(&[warm]).await?;

    let started = Instant::now();
    let requests = join_all(ids.iter().map(|&id| async move {
        let sent = Instant::now();
        start(serve, id).await.map(|()| (id, sent, sent.elapsed()))
    }))
    .await;
    let mut sent = HashMap::new();
    let mut answered = Latencies::new();
    for request in requests {
        let (id, at, took) = request?;
        sent.insert(id, at);
        answered.record(took);
    }
    let (running, last_position) = events.until_running(&ids).await?;
    // Done when the read model says so, as a client reading it would see.
    let listed = serve
        .send_json(
            Method::GET,
            &format!(
                "/api/v1/servers?catalog_id={entry_id}&state=running&page_size=500&min_position={last_position}"
            ),
            None,
        )
        .await?;
    let total = started.elapsed();
    anyhow::ensure!(
        listed["total"].as_i64() == i64::try_from(count + 1).ok(),
        "the read model does not show every server running: {listed}"
    );
    events.close();

    let mut latencies = Latencies::new();
    for id in &ids {
        latencies.record(running[id] - sent[id]);
    }
    let phases = phases(db, &ids, &mut answered).await?;
    Ok((Timings { total, latencies }, phases))
}

async fn start(serve: &BerthServe, id: Uuid) -> anyhow::Result<()> {
    let path = format!("/api/v1/servers/{id}/start");
    serve
        .send_json(reqwest::Method::POST, &path, None)
        .await
        .map(drop)
}

/// Berth's server events as its live stream delivers them, each with when it arrived.
struct ServerEvents {
    arrivals: mpsc::UnboundedReceiver<anyhow::Result<(Instant, i64, Value)>>,
    reader: tokio::task::JoinHandle<()>,
}

impl ServerEvents {
    /// Follows `GET /api/v1/events/stream` for server events after `position`.
    async fn open(serve: &BerthServe, position: i64) -> anyhow::Result<Self> {
        let url = serve.url(&format!(
            "/api/v1/events/stream?aggregate_type=server&after={position}"
        ));
        let mut response = serve.client().get(&url).send().await?;
        anyhow::ensure!(
            response.status().is_success(),
            "GET /api/v1/events/stream: {}",
            response.status()
        );
        let (tx, arrivals) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut buffer = Vec::new();
            loop {
                let chunk = match response.chunk().await {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => {
                        let _ = tx.send(Err(anyhow!("the live stream ended")));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(anyhow!("reading the live stream: {e}")));
                        return;
                    }
                };
                let at = Instant::now();
                buffer.extend_from_slice(&chunk);
                while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                    let frame: Vec<u8> = buffer.drain(..end + 2).collect();
                    if let Some(event) = sse_event(&frame) {
                        let _ = tx.send(event.map(|(position, e)| (at, position, e)));
                    }
                }
            }
        });
        Ok(Self { arrivals, reader })
    }

    /// Waits until every server of `ids` has a `ServerRunning` event; when each came,
    /// and the position of the last. A `ServerFailed` of one of them is an error.
    async fn until_running(
        &mut self,
        ids: &[Uuid],
    ) -> anyhow::Result<(HashMap<Uuid, Instant>, i64)> {
        let deadline = Instant::now() + DEADLINE;
        let mut running = HashMap::new();
        let mut last = 0;
        while running.len() < ids.len() {
            let next = tokio::time::timeout_at(deadline, self.arrivals.recv())
                .await
                .map_err(|_| {
                    anyhow!(
                        "{} of {} servers running after {DEADLINE:?}",
                        running.len(),
                        ids.len()
                    )
                })?
                .context("the live stream reader stopped")??;
            let (at, position, event) = next;
            let Some(id) = event["aggregate_id"]
                .as_str()
                .and_then(|s| s.parse::<Uuid>().ok())
                .filter(|id| ids.contains(id))
            else {
                continue;
            };
            match event["event_type"].as_str() {
                Some("ServerRunning") => {
                    running.insert(id, at);
                    last = last.max(position);
                }
                Some("ServerFailed") => {
                    anyhow::bail!("server {id} failed to start: {}", event["payload"])
                }
                _ => {}
            }
        }
        Ok((running, last))
    }

    fn close(self) {
        self.reader.abort();
    }
}

/// The position and event of one SSE message; an error for an end message (`event:
/// lagged|shutdown|unavailable`); `None` for comments.
fn sse_event(frame: &[u8]) -> Option<anyhow::Result<(i64, Value)>> {
    let text = String::from_utf8_lossy(frame);
    let mut position = None;
    let mut data = None;
    for line in text.lines() {
        if let Some(kind) = line.strip_prefix("event: ") {
            return Some(Err(anyhow!("the live stream ended: {kind}")));
        } else if let Some(id) = line.strip_prefix("id: ") {
            position = id.trim().parse::<i64>().ok();
        } else if let Some(json) = line.strip_prefix("data: ") {
            data = serde_json::from_str::<Value>(json).ok();
        }
    }
    Some(Ok((position?, data?)))
}

/// Where Berth's time went, from the events' `recorded_at`: median, minimum and maximum
/// over the servers of each step the process manager takes.
async fn phases(
    db: &crate::BenchDatabase,
    ids: &[Uuid],
    answered: &mut Latencies,
) -> anyhow::Result<String> {
    const STEPS: [&str; 4] = [
        "ServerStartRequested",
        "ServerProvisioningBegan",
        "ServerContainerCreated",
        "ServerRunning",
    ];
    let client = db.database().connect().await?;
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let rows = client
        .query(
            "SELECT aggregate_id, event_type, extract(epoch FROM recorded_at)::float8 \
             FROM events WHERE aggregate_type = 'server' AND aggregate_id = ANY($1) \
             AND event_type = ANY($2)",
            &[&ids, &STEPS.to_vec()],
        )
        .await?;
    let mut at: HashMap<(String, String), f64> = HashMap::new();
    for row in rows {
        at.insert((row.get(0), row.get(1)), row.get(2));
    }
    let mut parts = vec![format!(
        "Berth's time per server, median (min–max): start request answered (202) {:.1} ms \
         ({:.1}–{:.1})",
        answered.percentile_ms(50.0),
        answered.percentile_ms(0.0),
        answered.percentile_ms(100.0)
    )];
    let labels = [
        "start recorded → process manager began",
        "→ container created",
        "→ started, handshake answered, running recorded",
    ];
    for (step, label) in STEPS.windows(2).zip(labels) {
        let mut took = Latencies::new();
        for id in &ids {
            let from = at.get(&(id.clone(), step[0].to_owned()));
            let to = at.get(&(id.clone(), step[1].to_owned()));
            if let (Some(from), Some(to)) = (from, to) {
                took.record(Duration::from_secs_f64((to - from).max(0.0)));
            }
        }
        parts.push(format!(
            "{label} {:.1} ms ({:.1}–{:.1})",
            took.percentile_ms(50.0),
            took.percentile_ms(0.0),
            took.percentile_ms(100.0)
        ));
    }
    Ok(parts.join("; "))
}
