//! Berth as several replicas on one database: command throughput and gateway calls/s
//! with 1, 2 and 3 `--role api` nodes (each against the one-node figure of the same run),
//! and how long the worker role takes to fail over.
//!
//! - One `--role worker` node runs the fixture as a process server; API nodes are added
//!   one at a time. Commands: the workload's config change (`PATCH`) from 16 clients,
//!   client `c` on API node `c % n`. Gateway: `echo` from 16 sessions spread the same
//!   way, each call passed by its API node to the worker, which holds the server's session.
//! - Failover: a second worker stands by; the active one is killed with SIGKILL and the
//!   time until the standby records itself active is taken, 10 times in a full run (the
//!   killed node is started again as the next standby).
//!
//! Every process shares the bench's cores: on a small machine more API nodes add work
//! rather than capacity, and the ratios say so.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_infrastructure::cipher::MasterKey;
use secrecy::ExposeSecret;
use serde_json::json;
use tokio::time::Instant;

use crate::load::drive;
use crate::report::Figure;
use crate::scenarios::gateway::{calls_through, close, gateway_session, running_server};
use crate::scenarios::http::{berth_binary, checked, patch, server_url, BenchApi};
use crate::serve::{BerthServe, ServeOptions};
use crate::{Bench, BenchDatabase};

const SCENARIO: &str = "replicas";

/// Clients of each measured run.
const CLIENTS: usize = 16;

/// API nodes measured.
const API_NODES: usize = 3;

/// How long a standby may take before the run counts as failed.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);

/// Runs the scenario.
pub async fn run(bench: &Bench<'_>) -> anyhow::Result<()> {
    let binary = berth_binary(bench)?;
    let db = bench.server.database("replicas", false).await?;
    let nodes = Nodes::new(binary, db);
    let worker = nodes.start("worker", "worker-1").await?;
    let outcome = async {
        let mut apis = vec![nodes.start("api", "api-1").await?];
        let fixture = berth_tests::docker::fixture_binary();
        let entry = json!({"name": "bench-fixture", "transport": "stdio",
                           "runtime": {"type": "process", "command": fixture.to_string_lossy()}});
        running_server(&apis[0], &entry, json!({"name": "files"})).await?;
        let api = BenchApi::register(&apis[0]).await?;
        let servers = api.servers(&apis[0], CLIENTS).await?;
        let mut one_node: Option<(f64, f64)> = None;
        for n in 1..=API_NODES {
            if apis.len() < n {
                apis.push(nodes.start("api", &format!("api-{n}")).await?);
            }
            let (commands, calls) = measure(bench, &apis, &servers).await?;
            let (commands_one, calls_one) = *one_node.get_or_insert((commands.0, calls.0));
            bench.report.add(
                Figure::new(
                    SCENARIO,
                    format!("config changes, {CLIENTS} clients over {n} API nodes"),
                    "commands/s",
                    commands.0,
                    commands.1,
                )
                .against("1 API node", commands_one),
            );
            bench.report.add(
                Figure::new(
                    SCENARIO,
                    format!("gateway tools/call, {CLIENTS} sessions over {n} API nodes"),
                    "calls/s",
                    calls.0,
                    calls.1,
                )
                .against("1 API node", calls_one),
            );
        }
        for api in apis {
            api.stop().await?;
        }
        failover(bench, &nodes, worker).await
    }
    .await;
    outcome
}

/// Commands/s and calls/s (each with its sample count) with clients spread over `apis`.
async fn measure(
    bench: &Bench<'_>,
    apis: &[BerthServe],
    servers: &Arc<Vec<uuid::Uuid>>,
) -> anyhow::Result<((f64, u64), (f64, u64))> {
    let duration = bench.scale.command_run;
    let targets: Arc<Vec<(reqwest::Client, String)>> = Arc::new(
        apis.iter()
            .map(|api| (api.client().clone(), api.base_url().to_owned()))
            .collect(),
    );
    let spread = Arc::clone(&targets);
    let servers_for = Arc::clone(servers);
    let commands = checked(
        drive(CLIENTS, duration, move |c, n| {
            let (client, base) = spread[c % spread.len()].clone();
            let url = server_url(&base, servers_for[c % servers_for.len()]);
            async move {
                patch(&client, &url, n).await?;
                Ok(0)
            }
        })
        .await,
    )?;
    let mut sessions = Vec::with_capacity(CLIENTS);
    for c in 0..CLIENTS {
        let api = &apis[c % apis.len()];
        sessions.push(gateway_session(&api.url("/mcp"), api.admin_token()).await?);
    }
    let sessions = Arc::new(sessions);
    let calls = calls_through(&sessions, duration, |n| {
        let mut params = rmcp::model::CallToolRequestParams::new("files__echo");
        params.arguments = json!({"text": format!("call {n}")}).as_object().cloned();
        params
    })
    .await?;
    close(sessions).await?;
    Ok((
        (commands.per_second(), commands.done),
        (calls.per_second(), calls.done),
    ))
}

/// The median and longest time from killing the active worker to a standby taking over.
async fn failover(bench: &Bench<'_>, nodes: &Nodes, first: BerthServe) -> anyhow::Result<()> {
    let pool = nodes.db.database().pool(2)?;
    let mut active = first;
    let mut active_name = "worker-1".to_owned();
    let mut standby = nodes.start("worker", "worker-2").await?;
    let mut standby_name = "worker-2".to_owned();
    wait_active(&pool, &active_name, FAILOVER_LIMIT).await?;
    let kills = bench.scale.failover_kills.max(1);
    let mut times = Vec::with_capacity(kills);
    for _ in 0..kills {
        active.kill();
        let killed = Instant::now();
        wait_active(&pool, &standby_name, FAILOVER_LIMIT).await?;
        times.push(killed.elapsed());
        // The killed node comes back, under its name, as the next standby.
        let back = nodes.start("worker", &active_name).await?;
        (active, standby) = (standby, back);
        std::mem::swap(&mut active_name, &mut standby_name);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    bench.report.add(Figure::new(
        SCENARIO,
        format!("worker failover (kill -9 to standby active), median of {kills}"),
        "ms",
        ms(times[times.len() / 2]),
        kills as u64,
    ));
    bench.report.add(Figure::new(
        SCENARIO,
        format!("worker failover (kill -9 to standby active), longest of {kills}"),
        "ms",
        ms(times[times.len() - 1]),
        kills as u64,
    ));
    active.stop().await?;
    standby.stop().await?;
    Ok(())
}

/// Waits until `node` is the active worker.
async fn wait_active(
    pool: &deadpool_postgres::Pool,
    node: &str,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let active = berth_infrastructure::nodes::active(pool, None).await?;
        if active.is_some_and(|a| a.name == node) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{node} did not become the active worker within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts the nodes of one installation: the same database and keys.
struct Nodes {
    binary: std::path::PathBuf,
    db: BenchDatabase,
    keys: Vec<(String, String)>,
}

impl Nodes {
    fn new(binary: std::path::PathBuf, db: BenchDatabase) -> Self {
        let key = || MasterKey::generate().to_base64().expose_secret().to_owned();
        let token = berth_application::identity::generate_api_key();
        Self {
            binary,
            db,
            keys: vec![
                ("BERTH_MASTER_KEY".into(), key()),
                ("BERTH_SIGNING_KEY".into(), key()),
                ("BERTH_ADMIN_TOKEN".into(), token.expose_secret().to_owned()),
            ],
        }
    }

    async fn start(&self, role: &str, node: &str) -> anyhow::Result<BerthServe> {
        let mut env = self.keys.clone();
        env.extend([
            ("BERTH_ROLE".into(), role.into()),
            ("BERTH_NODE".into(), node.into()),
            ("BERTH_GATEWAY_CALLS_PER_SECOND".into(), "0".into()),
            ("BERTH_GATEWAY_TOOL_CALLS_PER_SECOND".into(), "0".into()),
            ("BERTH_GATEWAY_MAX_IN_FLIGHT".into(), "1024".into()),
        ]);
        let options = ServeOptions {
            env,
            ..ServeOptions::default()
        };
        BerthServe::start(&self.binary, &self.db, &options)
            .await
            .with_context(|| format!("starting {role} node {node}"))
    }
}
