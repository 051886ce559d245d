//! A random but realistic event history: catalog entries and servers driven through the
//! domain's own decisions, appended through the real event repository by concurrent
//! writers whose transactions commit out of position order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_application::ports::SecretCipher;
use berth_application::{Actor, CommandMetadata};
use berth_domain::catalog::{CatalogCommand, CatalogEntry};
use berth_domain::server::{ConfigChange, Health, SealedSecret, Server, ServerCommand, Tool};
use berth_infrastructure::cipher::{MasterKey, MasterKeyCipher};
use berth_infrastructure::event_store::PostgresEventRepository;
use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, DomainEvent};
use deadpool_postgres::Pool;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use uuid::Uuid;

use crate::kit::definition;

/// An aggregate with its id and the sequence of its last event.
#[derive(Clone, Default)]
struct Tracked<A> {
    id: Uuid,
    state: A,
    sequence: usize,
}

impl<A: Aggregate> Tracked<A> {
    fn new(id: Uuid) -> Self {
        Self {
            id,
            state: A::default(),
            sequence: 0,
        }
    }

    /// Applies `events` and serialises them after the current sequence.
    fn record(
        &mut self,
        events: Vec<A::Event>,
        metadata: &serde_json::Value,
    ) -> Vec<SerializedEvent> {
        events
            .into_iter()
            .map(|event| {
                self.sequence += 1;
                let out = SerializedEvent::new(
                    self.id.to_string(),
                    self.sequence,
                    A::TYPE.to_string(),
                    event.event_type(),
                    event.event_version(),
                    serde_json::to_value(&event).expect("event to JSON"),
                    metadata.clone(),
                );
                self.state.apply(event);
                out
            })
            .collect()
    }
}

/// One writer's aggregates.
struct Writer {
    rng: StdRng,
    cipher: Arc<MasterKeyCipher>,
    catalogs: Vec<Tracked<CatalogEntry>>,
    servers: Vec<Tracked<Server>>,
    next_name: usize,
}

impl Writer {
    fn metadata(&mut self) -> serde_json::Value {
        let actor = if self.rng.gen_bool(0.5) {
            Actor::User(format!("user{}", self.rng.gen_range(0..4)))
        } else {
            Actor::System("process-manager".into())
        };
        let mut m = CommandMetadata::new(actor);
        if self.rng.gen_bool(0.2) {
            m.correlation_id = Some(Uuid::now_v7());
        }
        serde_json::to_value(m.to_map()).expect("metadata to JSON")
    }

    fn seal(&self, server: Uuid, key: &str) -> SealedSecret {
        let plain = SecretString::from(format!("plain-{key}-{server}"));
        self.cipher
            .seal("user:sim", server, key, &plain)
            .expect("seal")
    }

    fn server_command(&mut self, id: Uuid) -> ServerCommand {
        use ServerCommand as C;
        match self.rng.gen_range(0..16) {
            0 | 1 => C::Start,
            2 => C::Stop,
            3 => C::Restart,
            4 => C::Enable,
            5 => C::Disable,
            6 => C::Delete,
            7 | 8 => C::BeginProvisioning,
            9 => C::RecordContainerCreated {
                container_id: format!("c-{}", self.rng.gen::<u32>()),
                node: "n1".into(),
            },
            10 => C::RecordRunning {
                tools: vec![],
                endpoint: None,
            },
            11 => C::RecordFailed {
                reason: format!("failure {}", self.rng.gen::<u16>()),
            },
            12 => C::RecordStopped,
            13 => C::RecordHealth {
                health: [Health::Healthy, Health::Unhealthy, Health::Unknown]
                    [self.rng.gen_range(0..3)],
            },
            14 => C::RecordTools {
                tools: (0..self.rng.gen_range(0..4))
                    .map(|_| Tool {
                        name: format!("tool{}", self.rng.gen_range(0..6)),
                        description: self.rng.gen_bool(0.5).then(|| "does things".into()),
                        input_schema: None,
                    })
                    .collect(),
            },
            _ => C::UpdateConfig {
                schema: definition("x", "").config_schema,
                config: BTreeMap::from([(
                    "LEVEL".to_string(),
                    ConfigChange::Set(self.rng.gen::<u8>().to_string()),
                )]),
                secrets: BTreeMap::from([(
                    "WEBHOOK_SECRET".to_string(),
                    ConfigChange::Set(self.seal(id, "WEBHOOK_SECRET")),
                )]),
                restart_policy: None,
            },
        }
    }

    /// The events of one more command the domain accepts.
    fn next_command(&mut self) -> Vec<SerializedEvent> {
        loop {
            let roll = self.rng.gen_range(0..100);
            let metadata = self.metadata();
            if self.catalogs.is_empty() || roll < 3 {
                let mut entry = Tracked::<CatalogEntry>::new(Uuid::now_v7());
                let command = CatalogCommand::Register {
                    owner: "user:sim".into(),
                    definition: definition(&format!("entry-{}", entry.id), "simulated"),
                };
                if let Ok(events) = entry.state.decide(command) {
                    let events = entry.record(events, &metadata);
                    self.catalogs.push(entry);
                    return events;
                }
            } else if roll < 6 {
                let i = self.rng.gen_range(0..self.catalogs.len());
                let name = format!("renamed-{}", self.rng.gen::<u16>());
                let entry = &mut self.catalogs[i];
                let command = CatalogCommand::Update {
                    definition: definition(&name, "again"),
                };
                if let Ok(events) = entry.state.decide(command) {
                    return entry.record(events, &metadata);
                }
            } else if self.servers.is_empty() || roll < 14 {
                let entry = &self.catalogs[self.rng.gen_range(0..self.catalogs.len())];
                let mut server = Tracked::<Server>::new(Uuid::now_v7());
                self.next_name += 1;
                let command = ServerCommand::Create {
                    owner: "user:sim".into(),
                    catalog_id: entry.id,
                    catalog_version: entry.state.version,
                    schema: definition("x", "").config_schema,
                    name: format!("server-{}", self.next_name),
                    config: BTreeMap::from([("ORG".to_string(), "acme".to_string())]),
                    secrets: BTreeMap::from([("TOKEN".to_string(), self.seal(server.id, "TOKEN"))]),
                    restart_policy: Default::default(),
                };
                if let Ok(events) = server.state.decide(command) {
                    let events = server.record(events, &metadata);
                    self.servers.push(server);
                    return events;
                }
            } else {
                let i = self.rng.gen_range(0..self.servers.len());
                let command = self.server_command(self.servers[i].id);
                let server = &mut self.servers[i];
                match server.state.decide(command) {
                    Ok(events) if !events.is_empty() => {
                        let events = server.record(events, &metadata);
                        if server.state.deleted {
                            self.servers.swap_remove(i);
                        }
                        return events;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Appends at least `events` events from `writers` concurrent writers, each committing
/// one to three commands per transaction. Returns how many events were written and how
/// many servers are live at the end.
pub async fn write_history(
    pool: &Pool,
    writers: usize,
    events: usize,
    seed: u64,
) -> (usize, usize) {
    let cipher = Arc::new(MasterKeyCipher::new(MasterKey::generate()));
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let pool = pool.clone();
            let mut writer = Writer {
                rng: StdRng::seed_from_u64(seed.wrapping_add(w as u64)),
                cipher: cipher.clone(),
                catalogs: Vec::new(),
                servers: Vec::new(),
                next_name: w * 1_000_000,
            };
            let quota = events.div_ceil(writers);
            tokio::spawn(async move {
                let mut written = 0;
                while written < quota {
                    let mut client = pool.get().await.expect("connection");
                    let tx = client.transaction().await.expect("begin");
                    for _ in 0..writer.rng.gen_range(1..4) {
                        let batch = writer.next_command();
                        written += batch.len();
                        PostgresEventRepository::append_in_transaction(&tx, &batch)
                            .await
                            .expect("append");
                    }
                    if writer.rng.gen_bool(0.2) {
                        // Held open so that later positions commit first.
                        let pause = writer.rng.gen_range(1..5);
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                    }
                    tx.commit().await.expect("commit");
                }
                (written, writer.servers.len())
            })
        })
        .collect();
    let mut total = (0, 0);
    for task in tasks {
        let (written, live) = task.await.expect("writer");
        total.0 += written;
        total.1 += live;
    }
    total
}
