//! Command throughput and latency at each client count, each client on its own server
//! and all on one hot server, for three writers on the same PostgreSQL server, taking
//! turns run by run:
//!
//! - raw: single-row INSERT transactions of the same payload size into a bare table,
//!   the commit rate this server can give at all (the baseline);
//! - Berth: the application's config change (`CommandBus::update_server_config`, what
//!   `PATCH /servers/{id}` runs), through its event store;
//! - peer: the same aggregate and command on cqrs-es's own PostgreSQL store, which reads
//!   an aggregate's whole stream for each command: run with each client on one aggregate
//!   for the whole run (as Berth's), and, to be fair to it, with short streams (a fresh
//!   aggregate every [`SHORT_STREAM`] events).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_application::commands::{CONFLICT_RETRIES, MAX_ATTEMPTS};
use berth_application::CommandBus;
use berth_domain::ServerId;
use berth_infrastructure::cipher::{MasterKey, MasterKeyCipher};
use berth_infrastructure::event_store::PostgresEventRepository;
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::load::{drive, Run};
use crate::peer::PeerStore;
use crate::report::{percentile_figures, Figure, Target};
use crate::{workload, Bench};

const SCENARIO: &str = "commands";

/// How long each writer warms up (connections opened, statements prepared, caches
/// filled) before the measured runs.
const WARM_UP: Duration = Duration::from_millis(500);

/// Events per aggregate in the peer's short-stream runs.
const SHORT_STREAM: u32 = 10;

/// The client count the throughput targets are set at.
const TARGET_CLIENTS: usize = 16;

/// Berth's writers.
pub(crate) struct Berth {
    bus: Arc<CommandBus<PostgresEventRepository>>,
    catalog_id: Uuid,
    pool: Pool,
}

/// Runs the scenario.
pub async fn run(bench: &Bench<'_>) -> anyhow::Result<()> {
    let max_clients = bench.scale.clients.iter().copied().max().unwrap_or(1);
    let berth_db = bench.server.database("commands", true).await?;
    let raw_db = bench.server.database("raw", false).await?;
    let peer_db = bench.server.database("peer", false).await?;
    let result = measure(bench, max_clients, &berth_db, &raw_db, &peer_db).await;
    for db in [berth_db, raw_db, peer_db] {
        db.remove().await?;
    }
    result
}

async fn measure(
    bench: &Bench<'_>,
    max_clients: usize,
    berth_db: &crate::BenchDatabase,
    raw_db: &crate::BenchDatabase,
    peer_db: &crate::BenchDatabase,
) -> anyhow::Result<()> {
    let berth = Berth::start(berth_db, max_clients).await?;
    let peer = Arc::new(
        PeerStore::connect(&peer_db.uri(), u32::try_from(max_clients)?)
            .await
            .context("connecting postgres-es")?,
    );

    // Warm-up, which also gives Berth's stored size of one command for the raw rows.
    let servers = berth.servers(max_clients).await?;
    berth.load(max_clients, WARM_UP, servers).await.check()?;
    let warm_peer = peer_servers(&peer, max_clients).await?;
    peer_load(&peer, max_clients, WARM_UP, warm_peer)
        .await
        .check()?;
    let payload = berth.stored_command_size().await?;
    let raw = Raw::start(raw_db, max_clients, payload).await?;
    raw.load(max_clients, WARM_UP).await.check()?;
    bench.report.note(
        SCENARIO,
        &format!(
            "each raw INSERT carries {payload} bytes of JSON, the size of one stored config change"
        ),
    );

    for &clients in &bench.scale.clients {
        let duration = bench.scale.command_run;
        let mut raw_run = raw.load(clients, duration).await.check()?;
        let label = format!("raw INSERT, {clients} clients");
        for hot in [false, true] {
            let count = if hot { 1 } else { clients };
            let shape = if hot {
                "one hot aggregate"
            } else {
                "own aggregate"
            };
            let servers = berth.servers(count).await?;
            let conflicts_before = CONFLICT_RETRIES.load(Ordering::Relaxed);
            let mut berth_run = berth.load(clients, duration, servers).await.check()?;
            berth_run.conflicts = CONFLICT_RETRIES.load(Ordering::Relaxed) - conflicts_before;
            let peer_ids = peer_servers(&peer, count).await?;
            let mut peer_run = peer_load(&peer, clients, duration, peer_ids)
                .await
                .check()?;

            let name = format!("Berth, {shape}, {clients} clients");
            let mut throughput = Figure::new(
                SCENARIO,
                format!("{name}: commands/s"),
                "commands/s",
                berth_run.per_second(),
                berth_run.done,
            )
            .against(&label, raw_run.per_second());
            if !hot && clients == TARGET_CLIENTS {
                throughput = throughput.target(Target::RatioAtLeast(0.7));
            }
            bench.report.add(throughput);
            latency_figures(bench, &name, &mut berth_run, &label, &mut raw_run.latencies);
            if berth_run.conflicts > 0 || berth_run.failed > 0 {
                bench.report.note(
                    SCENARIO,
                    &format!(
                        "{name}: {} conflicts retried, {} commands failed{}",
                        berth_run.conflicts,
                        berth_run.failed,
                        berth_run
                            .first_error
                            .as_deref()
                            .map_or(String::new(), |e| format!(" (first: {e})"))
                    ),
                );
            }

            let peer_name = format!("postgres-es, {shape}, {clients} clients");
            bench.report.add(
                Figure::new(
                    SCENARIO,
                    format!("{peer_name}: commands/s"),
                    "commands/s",
                    peer_run.per_second(),
                    peer_run.done,
                )
                .against(&label, raw_run.per_second()),
            );
            latency_figures(
                bench,
                &peer_name,
                &mut peer_run,
                &label,
                &mut raw_run.latencies,
            );
            let mut versus = Figure::new(
                SCENARIO,
                format!("Berth ÷ postgres-es, {shape}, {clients} clients"),
                "commands/s",
                berth_run.per_second(),
                berth_run.done,
            )
            .against(peer_name, peer_run.per_second());
            if !hot && clients == TARGET_CLIENTS {
                versus = versus.target(Target::RatioAtLeast(2.0));
            }
            bench.report.add(versus);
            if !hot {
                let mut short_run = peer_load_short(&peer, clients, duration).await.check()?;
                let short_name = format!(
                    "postgres-es, own aggregate, a fresh one every {SHORT_STREAM} events, \
                     {clients} clients"
                );
                bench.report.add(
                    Figure::new(
                        SCENARIO,
                        format!("{short_name}: commands/s"),
                        "commands/s",
                        short_run.per_second(),
                        short_run.done,
                    )
                    .against(&label, raw_run.per_second()),
                );
                latency_figures(
                    bench,
                    &short_name,
                    &mut short_run,
                    &label,
                    &mut raw_run.latencies,
                );
                let mut versus_short = Figure::new(
                    SCENARIO,
                    format!("Berth ÷ postgres-es with short streams, {clients} clients"),
                    "commands/s",
                    berth_run.per_second(),
                    berth_run.done,
                )
                .against(short_name, short_run.per_second());
                if clients == TARGET_CLIENTS {
                    versus_short = versus_short.target(Target::RatioAtLeast(2.0));
                }
                bench.report.add(versus_short);
            }
        }
    }
    Ok(())
}

fn latency_figures(
    bench: &Bench<'_>,
    name: &str,
    run: &mut Run,
    baseline: &str,
    baseline_latencies: &mut crate::stats::Latencies,
) {
    let figures = percentile_figures(
        SCENARIO,
        name,
        &mut run.latencies,
        run.done,
        baseline,
        baseline_latencies,
    );
    for figure in figures {
        bench.report.add(figure);
    }
}

impl Run {
    /// The run, unless nothing succeeded.
    fn check(self) -> anyhow::Result<Self> {
        if self.done == 0 {
            anyhow::bail!(
                "no operation succeeded ({} failed): {}",
                self.failed,
                self.first_error.as_deref().unwrap_or("no error")
            );
        }
        Ok(self)
    }
}

impl Berth {
    pub(crate) async fn start(db: &crate::BenchDatabase, clients: usize) -> anyhow::Result<Self> {
        let pool = db.database().pool(clients)?;
        let cipher = Arc::new(MasterKeyCipher::new(MasterKey::generate()));
        let bus = Arc::new(CommandBus::new(
            PostgresEventRepository::new(pool.clone()),
            cipher,
        ));
        let (catalog_id, _) = bus
            .register_catalog_entry(&workload::metadata(), workload::definition())
            .await
            .context("registering the bench catalog entry")?;
        Ok(Self {
            bus,
            catalog_id: catalog_id.uuid(),
            pool,
        })
    }

    /// `count` new servers.
    pub(crate) async fn servers(&self, count: usize) -> anyhow::Result<Arc<Vec<ServerId>>> {
        let mut ids = Vec::with_capacity(count);
        for n in 0..count {
            let (id, _) = self
                .bus
                .create_server(
                    &workload::metadata(),
                    workload::new_server(self.catalog_id, n),
                )
                .await
                .context("creating a bench server")?;
            ids.push(id);
        }
        Ok(Arc::new(ids))
    }

    /// Config changes from `clients` clients, client `c` on `servers[c % len]`.
    pub(crate) async fn load(
        &self,
        clients: usize,
        duration: Duration,
        servers: Arc<Vec<ServerId>>,
    ) -> Run {
        let bus = Arc::clone(&self.bus);
        drive(clients, duration, move |client, n| {
            let bus = Arc::clone(&bus);
            let id = servers[client % servers.len()];
            async move {
                bus.update_server_config(&workload::metadata(), id, workload::patch(n))
                    .await?;
                Ok(0)
            }
        })
        .await
    }

    /// Bytes of JSON (payload and metadata) one stored config change takes.
    async fn stored_command_size(&self) -> anyhow::Result<usize> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT coalesce(avg(octet_length(payload::text) + octet_length(metadata::text)), 0)::bigint \
                 FROM events WHERE event_type = 'ServerConfigUpdated'",
                &[],
            )
            .await?;
        let size: i64 = row.get(0);
        anyhow::ensure!(size > 0, "no config change was stored by the warm-up");
        Ok(usize::try_from(size)?)
    }
}

async fn peer_servers(peer: &PeerStore, count: usize) -> anyhow::Result<Arc<Vec<String>>> {
    let catalog_id = Uuid::now_v7();
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        ids.push(peer.create_server(catalog_id, n).await?);
    }
    Ok(Arc::new(ids))
}

async fn peer_load(
    peer: &Arc<PeerStore>,
    clients: usize,
    duration: Duration,
    servers: Arc<Vec<String>>,
) -> Run {
    let peer = Arc::clone(peer);
    drive(clients, duration, move |client, n| {
        let peer = Arc::clone(&peer);
        let servers = Arc::clone(&servers);
        async move {
            let id = &servers[client % servers.len()];
            peer.update(id, n, MAX_ATTEMPTS).await
        }
    })
    .await
}

/// The peer's config changes with each client moving to a fresh aggregate (created by
/// the same kind of command) every [`SHORT_STREAM`] events, so that no stream it reads
/// back is long.
async fn peer_load_short(peer: &Arc<PeerStore>, clients: usize, duration: Duration) -> Run {
    let peer = Arc::clone(peer);
    let catalog_id = Uuid::now_v7();
    // Each client's aggregate and how many events it holds; only that client uses it.
    let current: Arc<Vec<tokio::sync::Mutex<(String, u32)>>> = Arc::new(
        (0..clients)
            .map(|_| tokio::sync::Mutex::new((String::new(), SHORT_STREAM)))
            .collect(),
    );
    drive(clients, duration, move |client, n| {
        let (peer, current) = (Arc::clone(&peer), Arc::clone(&current));
        async move {
            let mut slot = current[client].lock().await;
            if slot.1 >= SHORT_STREAM {
                let fresh = usize::try_from(n).unwrap_or(usize::MAX);
                *slot = (peer.create_server(catalog_id, fresh).await?, 1);
                return Ok(0);
            }
            slot.1 += 1;
            peer.update(&slot.0, n, MAX_ATTEMPTS).await
        }
    })
    .await
}

/// The baseline writer: one single-row INSERT transaction per operation.
struct Raw {
    pool: Pool,
    payload: Arc<serde_json::Value>,
}

impl Raw {
    async fn start(db: &crate::BenchDatabase, clients: usize, size: usize) -> anyhow::Result<Self> {
        let pool = db.database().pool(clients)?;
        pool.get()
            .await?
            .batch_execute(
                "CREATE TABLE raw_events (\
                 id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload jsonb NOT NULL)",
            )
            .await?;
        // `{"data":"xxx…"}` whose text is `size` bytes long.
        let filler = "x".repeat(size.saturating_sub(r#"{"data": ""}"#.len()));
        Ok(Self {
            pool,
            payload: Arc::new(serde_json::json!({ "data": filler })),
        })
    }

    async fn load(&self, clients: usize, duration: Duration) -> Run {
        let pool = self.pool.clone();
        let payload = Arc::clone(&self.payload);
        drive(clients, duration, move |_, _| {
            let pool = pool.clone();
            let payload = Arc::clone(&payload);
            async move {
                let client = pool.get().await?;
                let insert = client
                    .prepare_cached("INSERT INTO raw_events (payload) VALUES ($1)")
                    .await?;
                client.execute(&insert, &[&*payload]).await?;
                Ok(0)
            }
        })
        .await
    }
}
