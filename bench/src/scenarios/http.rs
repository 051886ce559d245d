//! Command throughput and latency through the HTTP API: `PATCH /api/v1/servers/{id}`
//! config changes (the workload's change) sent to the real `berth serve` from 1, 4, 16
//! and 64 closed-loop clients, each client on its own server. The baseline, in the same
//! run and taking turns with it: the same command in-process
//! (`CommandBus::update_server_config`, what the handler runs) on a fresh database of
//! its own, so the figure shows what HTTP, authentication and the server around the
//! command cost.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_domain::catalog::Transport;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::load::{drive, Run};
use crate::report::{percentile_figures, Figure};
use crate::scenarios::commands::Berth;
use crate::serve::{BerthServe, ServeOptions};
use crate::{workload, Bench};

const SCENARIO: &str = "http";

/// How long each side warms up (connections opened, statements prepared) before the
/// measured runs.
const WARM_UP: Duration = Duration::from_millis(500);

/// Runs the scenario.
pub async fn run(bench: &Bench<'_>) -> anyhow::Result<()> {
    let binary = berth_binary(bench)?;
    let max_clients = bench.scale.clients.iter().copied().max().unwrap_or(1);
    let serve_db = bench.server.database("http_serve", false).await?;
    let in_process_db = bench.server.database("http_in_process", true).await?;
    let result = async {
        let serve = BerthServe::start(&binary, &serve_db, &ServeOptions::default()).await?;
        let measured = measure(bench, &serve, &serve_db, &in_process_db, max_clients).await;
        let stopped = serve.stop().await;
        measured?;
        stopped.map(drop)
    }
    .await;
    for db in [serve_db, in_process_db] {
        db.remove().await?;
    }
    result
}

async fn measure(
    bench: &Bench<'_>,
    serve: &BerthServe,
    serve_db: &crate::BenchDatabase,
    in_process_db: &crate::BenchDatabase,
    max_clients: usize,
) -> anyhow::Result<()> {
    bench.report.note(SCENARIO, &describe(serve));
    bench.report.note(
        SCENARIO,
        &format!(
            "baseline: the CommandBus in this process with a pool of {max_clients} connections; \
             berth serve runs its default pool of 16 for requests and projections"
        ),
    );
    let api = BenchApi::register(serve).await?;
    let in_process = Berth::start(in_process_db, max_clients).await?;

    let servers = api.servers(serve, max_clients).await?;
    checked(api.load(serve, max_clients, WARM_UP, servers).await)?;
    let servers = in_process.servers(max_clients).await?;
    checked(in_process.load(max_clients, WARM_UP, servers).await)?;

    request_floor(bench, serve).await?;

    for &clients in &bench.scale.clients {
        let duration = bench.scale.command_run;
        let servers = in_process.servers(clients).await?;
        let mut base = checked(in_process.load(clients, duration, servers).await)?;
        let servers = api.servers(serve, clients).await?;
        let before = next_xid(serve_db).await?;
        let mut http = checked(api.load(serve, clients, duration, servers).await)?;
        let writes = next_xid(serve_db).await? - before;

        let name = format!("PATCH /servers/{{id}}, {clients} clients");
        let label = format!("in-process, {clients} clients");
        bench.report.add(
            Figure::new(
                SCENARIO,
                format!("{name}: commands/s"),
                "commands/s",
                http.per_second(),
                http.done,
            )
            .against(&label, base.per_second()),
        );
        for figure in percentile_figures(
            SCENARIO,
            &name,
            &mut http.latencies,
            http.done,
            &label,
            &mut base.latencies,
        ) {
            bench.report.add(figure);
        }
        bench.report.note(
            SCENARIO,
            &format!(
                "{name}: {:.1} write transactions per command in the cluster during the run \
                 (the commands' and berth serve's background followers': projections, \
                 process manager, bulk driver)",
                writes as f64 / http.done as f64
            ),
        );
        if http.failed > 0 {
            bench.report.note(
                SCENARIO,
                &format!(
                    "{name}: {} requests failed, e.g. {}",
                    http.failed,
                    http.first_error.as_deref().unwrap_or("?")
                ),
            );
        }
    }
    Ok(())
}

/// What a request costs before any command runs, from one client: an authenticated
/// `GET /api/v1/me` (no database work but authentication) with the API key and with a
/// token from `POST /api/v1/auth/token`, beside the unauthenticated `GET /healthz`.
async fn request_floor(bench: &Bench<'_>, serve: &BerthServe) -> anyhow::Result<()> {
    let issued = serve
        .send_json(Method::POST, "/api/v1/auth/token", None)
        .await
        .context("exchanging the admin key for a token")?;
    let token = issued["token"]
        .as_str()
        .with_context(|| format!("no token in {issued}"))?
        .to_owned();
    let duration = bench.scale.command_run / 2;
    let health = serve.url("/healthz");
    let me = serve.url("/api/v1/me");
    let _ = get_loop(serve, &health, None, WARM_UP).await;
    let mut base = checked(get_loop(serve, &health, None, duration).await)?;
    let base_p50 = base.latencies.percentile_ms(50.0);
    for (credential, bearer) in [("API key", None), ("token", Some(token))] {
        let mut run = checked(get_loop(serve, &me, bearer, duration).await)?;
        let name = format!("GET /api/v1/me, {credential}, 1 client");
        bench.report.add(
            Figure::new(
                SCENARIO,
                format!("{name}: requests/s"),
                "requests/s",
                run.per_second(),
                run.done,
            )
            .against("GET /healthz, no auth", base.per_second()),
        );
        bench.report.add(
            Figure::new(
                SCENARIO,
                format!("{name}: p50 latency"),
                "ms",
                run.latencies.percentile_ms(50.0),
                run.done,
            )
            .against("GET /healthz, no auth", base_p50),
        );
    }
    Ok(())
}

/// `GET url` in a closed loop from one client, with the admin key or `bearer`.
async fn get_loop(
    serve: &BerthServe,
    url: &str,
    bearer: Option<String>,
    duration: Duration,
) -> Run {
    let client = serve.client().clone();
    let url = url.to_owned();
    drive(1, duration, move |_, _| {
        let mut request = client.get(&url);
        if let Some(token) = &bearer {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await?;
            let status = response.status();
            response.bytes().await?;
            anyhow::ensure!(status.is_success(), "GET answered {status}");
            Ok(0)
        }
    })
    .await
}

/// The next transaction id the cluster of `db` will assign: the difference between two
/// readings counts the write transactions between them (this reading takes none).
async fn next_xid(db: &crate::BenchDatabase) -> anyhow::Result<i64> {
    let client = db.database().connect().await?;
    let row = client
        .query_one(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
            &[],
        )
        .await
        .context("reading the next transaction id")?;
    Ok(row.get(0))
}

/// What the measured `berth serve` is, for the report.
pub(crate) fn describe(serve: &BerthServe) -> String {
    format!(
        "berth serve (pid {}) as a child process: its own database, --runtime process, \
         rate limit off (BERTH_RATE_LIMIT_PER_SECOND=0), default workers, pool and \
         log level; requests carry the admin API key",
        serve.pid()
    )
}

/// The `berth` binary, or why there is none.
pub(crate) fn berth_binary(bench: &Bench<'_>) -> anyhow::Result<PathBuf> {
    bench.berth_binary.clone().context(
        "no berth binary: build it beside berth-bench \
         (cargo build --release -p berth-api -p berth-bench) or pass --berth",
    )
}

/// The run, unless nothing succeeded.
pub(crate) fn checked(run: Run) -> anyhow::Result<Run> {
    anyhow::ensure!(
        run.done > 0,
        "no request succeeded ({} failed): {}",
        run.failed,
        run.first_error.as_deref().unwrap_or("no error")
    );
    Ok(run)
}

/// The command workload over HTTP: the bench catalog entry, servers made from it, and
/// the workload's config change as a `PATCH` body.
pub(crate) struct BenchApi {
    catalog_id: Uuid,
    next_server: std::sync::atomic::AtomicUsize,
}

impl BenchApi {
    /// Registers the workload's catalog entry (`POST /api/v1/catalog`).
    pub(crate) async fn register(serve: &BerthServe) -> anyhow::Result<Self> {
        let answer = serve
            .send_json(Method::POST, "/api/v1/catalog", Some(&catalog_body()))
            .await
            .context("registering the bench catalog entry")?;
        let catalog_id = answer["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .with_context(|| format!("no catalog id in {answer}"))?;
        Ok(Self {
            catalog_id,
            next_server: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// `count` new servers (`POST /api/v1/servers`).
    pub(crate) async fn servers(
        &self,
        serve: &BerthServe,
        count: usize,
    ) -> anyhow::Result<Arc<Vec<Uuid>>> {
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let n = self
                .next_server
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let server = workload::new_server(self.catalog_id, n);
            let body = json!({
                "catalog_id": server.catalog_id,
                "name": server.name,
                "config": server.config,
            });
            let answer = serve
                .send_json(Method::POST, "/api/v1/servers", Some(&body))
                .await
                .context("creating a bench server")?;
            let id = answer["id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .with_context(|| format!("no server id in {answer}"))?;
            ids.push(id);
        }
        Ok(Arc::new(ids))
    }

    /// Config changes from `clients` closed-loop clients, client `c` on
    /// `servers[c % len]`.
    pub(crate) async fn load(
        &self,
        serve: &BerthServe,
        clients: usize,
        duration: Duration,
        servers: Arc<Vec<Uuid>>,
    ) -> Run {
        let client = serve.client().clone();
        let base = serve.base_url().to_owned();
        drive(clients, duration, move |c, n| {
            let client = client.clone();
            let url = server_url(&base, servers[c % servers.len()]);
            async move {
                patch(&client, &url, n).await?;
                Ok(0)
            }
        })
        .await
    }
}

/// `BASE/api/v1/servers/ID`.
pub(crate) fn server_url(base: &str, id: Uuid) -> String {
    format!("{base}/api/v1/servers/{id}")
}

/// Sends the workload's `n`-th config change to the server at `url`; the position its
/// event was committed at (the `Berth-Position` header).
pub(crate) async fn patch(client: &reqwest::Client, url: &str, n: u64) -> anyhow::Result<i64> {
    let response = client.patch(url).json(&patch_body(n)).send().await?;
    let status = response.status();
    let position = response
        .headers()
        .get("berth-position")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    // Read to the end, so the connection is reused.
    let body = response.bytes().await?;
    anyhow::ensure!(
        status == reqwest::StatusCode::ACCEPTED,
        "PATCH answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    position.context("a PATCH answer without Berth-Position")
}

/// The workload's `n`-th config change as a `PATCH` body.
fn patch_body(n: u64) -> Value {
    json!({ "config": workload::patch(n).config })
}

/// The workload's catalog entry as a `POST /api/v1/catalog` body.
fn catalog_body() -> Value {
    let definition = workload::definition();
    let schema: Vec<Value> = definition
        .config_schema
        .iter()
        .map(|k| {
            json!({
                "key": k.key,
                "description": k.description,
                "required": k.required,
                "secret": k.secret,
            })
        })
        .collect();
    // The domain's runtime has the API's shape.
    let runtime = serde_json::to_value(&definition.runtime).unwrap_or_default();
    json!({
        "name": definition.name,
        "description": definition.description,
        "transport": match definition.transport {
            Transport::Stdio => "stdio",
            Transport::Http => "http",
        },
        "runtime": runtime,
        "config_schema": schema,
        "resources": { "memory_mb": definition.resources.memory_mb },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_body_is_the_workload_change() {
        assert_eq!(
            patch_body(7),
            json!({ "config": { "LEVEL": "level-00000007" } })
        );
        let catalog = catalog_body();
        assert_eq!(catalog["config_schema"][0]["key"], "ORG");
        assert_eq!(catalog["config_schema"][0]["required"], true);
    }
}
