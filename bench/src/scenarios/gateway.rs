//! The MCP gateway's cost: `tools/call` of the fixture's `echo` through `berth serve`'s
//! `/mcp` against the same fixture called directly over its own stdio, with the same SDK
//! client (`rmcp`), in the same run, at 1, 16 and 64 clients.
//!
//! - Direct: one fixture process and one session with it over its stdio, shared by the
//!   clients, as the gateway itself shares one session with its upstream.
//! - Gateway: the real `berth serve --runtime process` as a child running the fixture as
//!   a process server; each client has its own Streamable HTTP session with `/mcp` (as
//!   agents do), every call authorized, guarded and recorded as an event meanwhile.
//! - Memory per idle session: `berth serve`'s resident memory before and after opening
//!   idle sessions, divided by their number.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_application::runtime::{McpEndpoint, StdioConnection};
use berth_infrastructure::mcp::{HttpClients, Upstream};
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use serde_json::json;
use tokio::process::Command;
use tokio::time::Instant;

use crate::load::{drive, Run};
use crate::report::{percentile_figures, Figure, Target};
use crate::scenarios::http::{berth_binary, checked};
use crate::serve::{BerthServe, ServeOptions};
use crate::Bench;

const SCENARIO: &str = "gateway";

/// Client counts measured.
const CLIENTS: [usize; 3] = [1, 16, 64];

/// Idle sessions opened to measure their memory.
const IDLE_SESSIONS: usize = 200;

/// How long the server gets to run after its start is asked for.
const START_WAIT: Duration = Duration::from_secs(60);

type Session = RunningService<RoleClient, ()>;

/// Runs the scenario.
pub async fn run(bench: &Bench<'_>) -> anyhow::Result<()> {
    let binary = berth_binary(bench)?;
    let db = bench.server.database("gateway", false).await?;
    let options = ServeOptions {
        env: vec![
            ("BERTH_GATEWAY_CALLS_PER_SECOND".into(), "0".into()),
            ("BERTH_GATEWAY_TOOL_CALLS_PER_SECOND".into(), "0".into()),
            ("BERTH_GATEWAY_MAX_IN_FLIGHT".into(), "1024".into()),
        ],
        ..ServeOptions::default()
    };
    let serve = BerthServe::start(&binary, &db, &options).await?;
    let outcome = measure(bench, &serve).await;
    serve.stop().await?;
    outcome
}

async fn measure(bench: &Bench<'_>, serve: &BerthServe) -> anyhow::Result<()> {
    let fixture = berth_tests::docker::fixture_binary();
    running_fixture(serve, &fixture.to_string_lossy()).await?;
    let (mut child, direct) = direct_session(&fixture).await?;
    let direct = Arc::new(direct);
    let url = serve.url("/mcp");
    let duration = bench.scale.command_run;
    for clients in CLIENTS {
        let sessions = gateway_sessions(&url, serve.admin_token(), clients).await?;
        let upstream = Arc::clone(&direct);
        let mut direct_run = checked(
            drive(clients, duration, move |_, n| {
                let upstream = Arc::clone(&upstream);
                async move {
                    upstream.peer().call_tool(echo(n)).await?;
                    Ok(0)
                }
            })
            .await,
        )?;
        let mut gateway_run = calls_through(&sessions, duration, echo_through).await?;
        let targets = Targets {
            ratio: (clients == 16).then_some(0.5),
            p50_overhead_ms: Some(1.0),
        };
        report(
            bench,
            SCENARIO,
            &format!("tools/call, {clients} clients"),
            "the same server called directly",
            targets,
            &mut gateway_run,
            &mut direct_run,
        );
        close(sessions).await?;
    }
    list_cost(bench, &direct, &url, serve.admin_token(), duration).await?;
    drop(direct);
    let _ = child.kill().await;
    idle_memory(bench, serve, &url).await
}

/// `tools/list` from one client, through the gateway and directly: a request that
/// reaches no server and records nothing, so its cost is the gateway's own (transport,
/// authentication, session).
async fn list_cost(
    bench: &Bench<'_>,
    direct: &Arc<Upstream>,
    url: &str,
    key: &str,
    duration: Duration,
) -> anyhow::Result<()> {
    let session = Arc::new(gateway_session(url, key).await?);
    let upstream = Arc::clone(direct);
    let mut direct_run = checked(
        drive(1, duration, move |_, _| {
            let upstream = Arc::clone(&upstream);
            async move {
                upstream.peer().list_tools(None).await?;
                Ok(0)
            }
        })
        .await,
    )?;
    let through = Arc::clone(&session);
    let mut gateway_run = checked(
        drive(1, duration, move |_, _| {
            let through = Arc::clone(&through);
            async move {
                through.peer().list_tools(None).await?;
                Ok(0)
            }
        })
        .await,
    )?;
    let samples = gateway_run.done;
    for figure in percentile_figures(
        SCENARIO,
        "tools/list (no server reached, nothing recorded), 1 client",
        &mut gateway_run.latencies,
        samples,
        "direct",
        &mut direct_run.latencies,
    ) {
        bench.report.add(figure);
    }
    Ok(())
}

/// The goals a call figure is held to.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Targets {
    /// Calls/s at least this ratio of the direct run's.
    pub ratio: Option<f64>,
    /// The p50 latency at most this many milliseconds above the direct run's.
    pub p50_overhead_ms: Option<f64>,
}

/// Calls/s, p50 and p99 of `gateway` beside `direct` (called `against`), and the p50
/// overhead, as figures `name` of `scenario`.
pub(crate) fn report(
    bench: &Bench<'_>,
    scenario: &str,
    name: &str,
    against: &str,
    targets: Targets,
    gateway: &mut Run,
    direct: &mut Run,
) {
    let mut calls = Figure::new(
        scenario,
        name,
        "calls/s",
        gateway.per_second(),
        gateway.done,
    )
    .against(against, direct.per_second());
    if let Some(ratio) = targets.ratio {
        calls = calls.target(Target::RatioAtLeast(ratio));
    }
    bench.report.add(calls);
    let overhead = gateway.latencies.percentile_ms(50.0) - direct.latencies.percentile_ms(50.0);
    let samples = gateway.done;
    for figure in percentile_figures(
        scenario,
        name,
        &mut gateway.latencies,
        samples,
        "direct",
        &mut direct.latencies,
    ) {
        bench.report.add(figure);
    }
    let mut overhead = Figure::new(
        scenario,
        format!("{name}: p50 overhead"),
        "ms",
        overhead,
        samples,
    );
    if let Some(most) = targets.p50_overhead_ms {
        overhead = overhead.target(Target::AtMost(most));
    }
    bench.report.add(overhead);
}

async fn idle_memory(bench: &Bench<'_>, serve: &BerthServe, url: &str) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = serve.rss_kb()?;
    let mut idle = Vec::with_capacity(IDLE_SESSIONS);
    for _ in 0..IDLE_SESSIONS {
        idle.push(gateway_session(url, serve.admin_token()).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = serve.rss_kb()?;
    bench.report.add(Figure::new(
        SCENARIO,
        format!("memory per idle session ({IDLE_SESSIONS} open)"),
        "KB",
        after.saturating_sub(before) as f64 / IDLE_SESSIONS as f64,
        IDLE_SESSIONS as u64,
    ));
    for session in idle {
        let _ = session.cancel().await;
    }
    Ok(())
}

fn echo(n: u64) -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new("echo");
    params.arguments = json!({"text": format!("call {n}")}).as_object().cloned();
    params
}

fn echo_through(n: u64) -> CallToolRequestParams {
    let mut params = echo(n);
    params.name = "files__echo".into();
    params
}

/// The fixture as server `files` of `berth serve`, running.
async fn running_fixture(serve: &BerthServe, fixture: &str) -> anyhow::Result<()> {
    let entry = json!({"name": "bench-fixture", "transport": "stdio",
                       "runtime": {"type": "process", "command": fixture}});
    running_server(serve, &entry, json!({"name": "files"})).await
}

/// Registers `entry`, creates `server` of it (its `catalog_id` filled in), starts it and
/// waits until it runs.
pub(crate) async fn running_server(
    serve: &BerthServe,
    entry: &serde_json::Value,
    mut server: serde_json::Value,
) -> anyhow::Result<()> {
    let entry = serve
        .send_json(reqwest::Method::POST, "/api/v1/catalog", Some(entry))
        .await?;
    server["catalog_id"] = json!(entry["id"].as_str().context("no catalog id")?);
    let server = serve
        .send_json(reqwest::Method::POST, "/api/v1/servers", Some(&server))
        .await?;
    let id = server["id"].as_str().context("no server id")?.to_owned();
    // Read the server once its read model has it.
    let created = server["position"].as_i64().context("no position")?;
    serve
        .send_json(
            reqwest::Method::POST,
            &format!("/api/v1/servers/{id}/start"),
            None,
        )
        .await?;
    let deadline = Instant::now() + START_WAIT;
    loop {
        let state = serve
            .send_json(
                reqwest::Method::GET,
                &format!("/api/v1/servers/{id}?min_position={created}"),
                None,
            )
            .await?;
        // The gateway takes in what is committed before it answers a list or an
        // unknown tool, so a running server's tools are there at once.
        if state["state"] == "running" {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the fixture never ran: {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fixture process of its own and a session with it over its stdio.
async fn direct_session(
    fixture: &std::path::Path,
) -> anyhow::Result<(tokio::process::Child, Upstream)> {
    let mut child = Command::new(fixture)
        .env_remove("PORT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting the fixture")?;
    let connection = StdioConnection {
        reader: Box::new(child.stdout.take().context("stdout")?),
        writer: Box::new(child.stdin.take().context("stdin")?),
    };
    let upstream = Upstream::open(
        McpEndpoint::Stdio(connection),
        Duration::from_secs(10),
        &HttpClients::default(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("opening a session with the fixture: {e}"))?;
    Ok((child, upstream))
}

/// `clients` sessions with the gateway at `url`, as `key`.
pub(crate) async fn gateway_sessions(
    url: &str,
    key: &str,
    clients: usize,
) -> anyhow::Result<Arc<Vec<Session>>> {
    let mut sessions = Vec::with_capacity(clients);
    for _ in 0..clients {
        sessions.push(gateway_session(url, key).await?);
    }
    Ok(Arc::new(sessions))
}

/// Calls `call(n)` through `sessions`, each its own client, for `duration`; a call
/// answered as an error fails the run.
pub(crate) async fn calls_through(
    sessions: &Arc<Vec<Session>>,
    duration: Duration,
    call: fn(u64) -> CallToolRequestParams,
) -> anyhow::Result<Run> {
    let through = Arc::clone(sessions);
    checked(
        drive(sessions.len(), duration, move |client, n| {
            let through = Arc::clone(&through);
            async move {
                let answer = through[client].peer().call_tool(call(n)).await?;
                anyhow::ensure!(answer.is_error != Some(true), "the call failed: {answer:?}");
                Ok(0)
            }
        })
        .await,
    )
}

/// Ends `sessions`.
pub(crate) async fn close(sessions: Arc<Vec<Session>>) -> anyhow::Result<()> {
    for session in
        Arc::try_unwrap(sessions).map_err(|_| anyhow::anyhow!("sessions still shared"))?
    {
        let _ = session.cancel().await;
    }
    Ok(())
}

/// A session with the gateway at `url`.
pub(crate) async fn gateway_session(url: &str, key: &str) -> anyhow::Result<Session> {
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(key);
    let transport = StreamableHttpClientTransport::from_config(config);
    ().serve(transport)
        .await
        .map_err(|e| anyhow::anyhow!("opening a gateway session: {e}"))
}
