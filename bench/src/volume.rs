//! A realistic volume of events, written fast: one catalog entry and the ordinary lives
//! of many servers ([`server_life`], ten events each) owned by [`OWNERS`] users, many
//! servers per transaction, through the real event store's `append` (so the database's
//! hash-chain and stream-owner triggers run for every event, as in production).
//!
//! The rebuild and query scenarios share one such data set per run ([`dataset`]): it is
//! written by whichever of them runs first and dropped by [`release`].

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_application::{Actor, CommandMetadata};
use berth_domain::catalog::{
    CatalogCommand, CatalogDefinition, CatalogEntry, ConfigKey, Resources, RuntimeSpec, Transport,
};
use berth_domain::server::{Health, SealedSecret, Server, ServerEvent, Tool};
use berth_infrastructure::event_store::PostgresEventRepository;
use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, DomainEvent};
use deadpool_postgres::Pool;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::{Bench, BenchDatabase};

/// Events in one server's life ([`server_life`]).
pub const EVENTS_PER_SERVER: usize = 10;

/// Users the servers are spread over (`user:user0` … `user:user49`), so per-owner
/// queries see a realistic share of the data.
pub const OWNERS: usize = 50;

/// Servers whose lives go into one transaction (5,000 events).
const SERVERS_PER_TRANSACTION: usize = 500;

/// Concurrent writers: one per core of the machines these figures come from.
const WRITERS: usize = 2;

/// An aggregate being written: its id, its state and the sequence of its last event.
#[derive(Clone, Debug, Default)]
pub struct Tracked<A> {
    /// The aggregate's id.
    pub id: Uuid,
    /// Its state after every recorded event.
    pub state: A,
    /// The sequence of its last recorded event (0 before the first).
    pub sequence: usize,
}

impl<A: Aggregate> Tracked<A> {
    /// A new aggregate with no events.
    pub fn new(id: Uuid) -> Self {
        Self {
            id,
            state: A::default(),
            sequence: 0,
        }
    }

    /// Applies `event` and serialises it after the current sequence, with `metadata`.
    pub fn record(&mut self, event: A::Event, metadata: &CommandMetadata) -> SerializedEvent {
        self.sequence += 1;
        let payload = serde_json::to_value(&event).unwrap_or_default();
        let metadata = serde_json::to_value(metadata.to_map()).unwrap_or_default();
        let out = SerializedEvent::new(
            self.id.to_string(),
            self.sequence,
            A::TYPE.to_string(),
            event.event_type(),
            event.event_version(),
            payload,
            metadata,
        );
        self.state.apply(event);
        out
    }
}

/// The owner of server `n`: `user:user<n % OWNERS>`.
pub fn owner(n: usize) -> String {
    format!("user:{}", owner_name(n))
}

fn owner_name(n: usize) -> String {
    format!("user{}", n % OWNERS)
}

/// The catalog entry every volume server is made from: a Docker stdio server with a
/// required `ORG`, an optional `LEVEL` and a secret `TOKEN`.
pub fn definition() -> CatalogDefinition {
    let key = |key: &str, required: bool, secret: bool| ConfigKey {
        key: key.into(),
        description: format!("the {key}"),
        required,
        secret,
        default: None,
    };
    CatalogDefinition {
        name: "volume".into(),
        description: "a server for measuring rebuilds and queries".into(),
        transport: Transport::Stdio,
        runtime: RuntimeSpec::Docker {
            image: "berth/volume:1".into(),
            command: vec![],
            port: None,
        },
        config_schema: vec![
            key("ORG", true, false),
            key("LEVEL", false, false),
            key("TOKEN", true, true),
        ],
        resources: Resources {
            memory_mb: Some(256),
            cpus: Some(0.5),
            pids: None,
        },
        gateway: Default::default(),
    }
}

/// The events of server `n`'s ordinary life, each with who caused it: created with
/// config and a secret, started, provisioned, running and healthy with tools,
/// reconfigured and stopped (ten events). The owner asks; the process manager and the
/// health check act on the request, under its correlation id.
pub fn server_life(entry: Uuid, n: usize) -> Vec<(ServerEvent, CommandMetadata)> {
    let sealed = || SealedSecret {
        key_id: "k-0192a7c4".into(),
        nonce: "bm9uY2Utbm9uY2U=".into(),
        ciphertext: "c2VhbGVkLXNlY3JldC12YWx1ZS13aXRoLXRhZw==".into(),
    };
    let tool = |name: &str| Tool {
        name: name.into(),
        description: Some("does things".into()),
        input_schema: Some(
            serde_json::json!({"type": "object", "properties": {"text": {"type": "string"}}}),
        ),
    };
    let user = || CommandMetadata::new(Actor::User(owner_name(n)));
    let start = user();
    let system = |name: &str| {
        let mut m = CommandMetadata::new(Actor::System(name.into()));
        m.correlation_id = Some(start.request_id);
        m.causation_id = Some(Uuid::now_v7());
        m
    };
    vec![
        (
            ServerEvent::Created {
                owner: owner(n),
                catalog_id: entry,
                catalog_version: 1,
                name: format!("server-{n:07}"),
                config: BTreeMap::from([("ORG".to_string(), "acme".to_string())]),
                secrets: BTreeMap::from([("TOKEN".to_string(), sealed())]),
                restart_policy: Default::default(),
            },
            user(),
        ),
        (ServerEvent::StartRequested, start.clone()),
        (ServerEvent::ProvisioningBegan, system("process-manager")),
        (
            ServerEvent::ContainerCreated {
                container_id: format!("c{n:012}"),
                node: Some("n1".into()),
            },
            system("process-manager"),
        ),
        (ServerEvent::Running, system("process-manager")),
        (
            ServerEvent::HealthChanged {
                health: Health::Healthy,
            },
            system("health-check"),
        ),
        (
            ServerEvent::ToolsDiscovered {
                tools: vec![tool("search"), tool("fetch")],
            },
            system("process-manager"),
        ),
        (
            ServerEvent::ConfigUpdated {
                config: BTreeMap::from([("ORG".to_string(), "acme-eu".to_string())]),
                secrets: BTreeMap::from([("TOKEN".to_string(), sealed())]),
                changed_keys: vec!["config.ORG".into()],
            },
            user(),
        ),
        (ServerEvent::StopRequested, user()),
        (ServerEvent::Stopped, system("process-manager")),
    ]
}

/// What [`write_volume`] wrote.
#[derive(Clone, Debug)]
pub struct Written {
    /// Events appended.
    pub events: usize,
    /// Servers created (all still live, stopped).
    pub servers: usize,
    /// The catalog entry they were made from.
    pub catalog_id: Uuid,
    /// How long it took.
    pub elapsed: Duration,
}

/// Appends one catalog entry and the lives of enough servers to make at least
/// `events` events, [`SERVERS_PER_TRANSACTION`] servers per transaction from
/// [`WRITERS`] concurrent writers. `pool` must allow that many connections.
pub async fn write_volume(pool: &Pool, events: usize) -> anyhow::Result<Written> {
    let started = Instant::now();
    let servers = events.saturating_sub(1).div_ceil(EVENTS_PER_SERVER);
    let mut entry = Tracked::<CatalogEntry>::new(Uuid::now_v7());
    let register = CatalogCommand::Register {
        owner: owner(0),
        definition: definition(),
    };
    let metadata = CommandMetadata::new(Actor::User(owner_name(0)));
    let first: Vec<SerializedEvent> = entry
        .state
        .decide(register)
        .context("registering the volume catalog entry")?
        .into_iter()
        .map(|e| entry.record(e, &metadata))
        .collect();
    let mut client = pool.get().await?;
    PostgresEventRepository::append(&mut client, &first)
        .await
        .context("appending the catalog entry")?;
    drop(client);

    let catalog_id = entry.id;
    let chunks: Vec<(usize, usize)> = (0..servers)
        .step_by(SERVERS_PER_TRANSACTION)
        .map(|from| (from, (from + SERVERS_PER_TRANSACTION).min(servers)))
        .collect();
    let chunks = Arc::new(std::sync::Mutex::new(chunks.into_iter()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let pool = pool.clone();
            let chunks = Arc::clone(&chunks);
            tokio::spawn(async move {
                let mut written = 0;
                loop {
                    let next = chunks
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .next();
                    let Some((from, to)) = next else {
                        return anyhow::Ok(written);
                    };
                    written += write_servers(&pool, catalog_id, from..to).await?;
                }
            })
        })
        .collect();
    let mut written = first.len();
    for writer in writers {
        written += writer.await.context("a volume writer panicked")??;
    }
    Ok(Written {
        events: written,
        servers,
        catalog_id,
        elapsed: started.elapsed(),
    })
}

/// The lives of servers `numbers`, in one transaction; returns the events written.
async fn write_servers(
    pool: &Pool,
    catalog_id: Uuid,
    numbers: std::ops::Range<usize>,
) -> anyhow::Result<usize> {
    let mut batch = Vec::with_capacity(numbers.len() * EVENTS_PER_SERVER);
    for n in numbers {
        let mut server = Tracked::<Server>::new(Uuid::now_v7());
        for (event, metadata) in server_life(catalog_id, n) {
            batch.push(server.record(event, &metadata));
        }
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    PostgresEventRepository::append_in_transaction(&tx, &batch)
        .await
        .context("appending server lives")?;
    tx.commit().await?;
    Ok(batch.len())
}

/// The data set of a run: a database holding [`write_volume`]'s events for
/// `Scale.events`.
pub struct Dataset {
    database: BenchDatabase,
    /// What was written.
    pub written: Written,
}

impl Dataset {
    /// Its database.
    pub fn database(&self) -> &BenchDatabase {
        &self.database
    }
}

fn shared() -> &'static Mutex<Option<Arc<Dataset>>> {
    static SHARED: OnceLock<Mutex<Option<Arc<Dataset>>>> = OnceLock::new();
    SHARED.get_or_init(|| Mutex::new(None))
}

/// The run's data set of `bench.scale.events` events: the one an earlier scenario of
/// this run wrote, or a new one (`berth_bench_volume`, replacing any left by a killed
/// run), written, vacuumed and analysed, as a database that has been in use a while is.
pub async fn dataset(bench: &Bench<'_>) -> anyhow::Result<Arc<Dataset>> {
    let mut shared = shared().lock().await;
    if let Some(data) = shared.as_ref() {
        if data.written.events >= bench.scale.events {
            return Ok(Arc::clone(data));
        }
    }
    if let Some(stale) = shared.take() {
        remove(stale).await?;
    }
    let database = bench.server.database("volume", true).await?;
    let written = async {
        let pool = database.database().pool(WRITERS)?;
        let written = write_volume(&pool, bench.scale.events).await?;
        pool.get()
            .await?
            .batch_execute("VACUUM (ANALYZE) events, stream_owners")
            .await
            .context("vacuuming the events")?;
        pool.close();
        anyhow::Ok(written)
    }
    .await;
    let written = match written {
        Ok(written) => written,
        Err(e) => {
            database.remove().await?;
            return Err(e);
        }
    };
    bench.report.note(
        "volume",
        &format!(
            "wrote {} events ({} servers of {OWNERS} owners) in {:.1} s: {:.0} events/s \
             through the event store's append, {WRITERS} writers",
            written.events,
            written.servers,
            written.elapsed.as_secs_f64(),
            crate::stats::rate(written.events as u64, written.elapsed)
        ),
    );
    let data = Arc::new(Dataset { database, written });
    *shared = Some(Arc::clone(&data));
    Ok(data)
}

/// Drops the run's data set, if one was written; call it once no scenario holds it.
pub async fn release() -> anyhow::Result<()> {
    let data = shared().lock().await.take();
    match data {
        Some(data) => remove(data).await,
        None => Ok(()),
    }
}

async fn remove(data: Arc<Dataset>) -> anyhow::Result<()> {
    match Arc::try_unwrap(data) {
        Ok(data) => data.database.remove().await,
        Err(data) => anyhow::bail!(
            "the volume data set {} is still in use and was not dropped",
            data.database.name()
        ),
    }
}
