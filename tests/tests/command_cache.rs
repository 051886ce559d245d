//! The command bus keeps aggregates in memory and writes concurrent commands in groups.
//! These tests play two Berth processes (two buses) on one database, so one bus's
//! cached state goes stale behind its back, and check that no command is ever decided
//! on a stale state; and that grouped appends tell each command its own positions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use berth_application::servers::{LifecycleAction, NewServer, ServerConfigPatch};
use berth_application::{Actor, AppError, CommandBus, CommandMetadata};
use berth_domain::catalog::{CatalogDefinition, ConfigKey, Resources, RuntimeSpec, Transport};
use berth_domain::server::ServerError;
use berth_domain::{CatalogEntryId, ServerId};
use berth_infrastructure::cipher::{MasterKey, MasterKeyCipher};
use berth_infrastructure::event_store::PostgresEventRepository;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use deadpool_postgres::Pool;
use tokio::sync::Barrier;
use uuid::Uuid;

type Bus = CommandBus<PostgresEventRepository>;

/// A bus of its own: its own cache, its own group committer (another process).
fn process(pool: &Pool) -> Bus {
    CommandBus::new(
        PostgresEventRepository::new(pool.clone()),
        Arc::new(MasterKeyCipher::new(MasterKey::generate())),
    )
}

fn md() -> CommandMetadata {
    CommandMetadata::new(Actor::admin())
}

fn definition() -> CatalogDefinition {
    CatalogDefinition {
        name: "cached".into(),
        description: String::new(),
        transport: Transport::Stdio,
        runtime: RuntimeSpec::Process {
            command: "true".into(),
            args: vec![],
        },
        config_schema: vec![ConfigKey {
            key: "LEVEL".into(),
            description: String::new(),
            required: false,
            secret: false,
            default: None,
        }],
        resources: Resources {
            memory_mb: None,
            cpus: None,
            pids: None,
        },
        gateway: Default::default(),
    }
}

async fn server(bus: &Bus) -> Uuid {
    let (catalog_id, _) = bus
        .register_catalog_entry(&md(), definition())
        .await
        .unwrap();
    server_of(bus, catalog_id, "cached").await.uuid()
}

/// A server named `name` of entry `catalog_id`, created through `bus`.
async fn server_of<R: PersistedEventRepository + Clone>(
    bus: &CommandBus<R>,
    catalog_id: CatalogEntryId,
    name: &str,
) -> ServerId {
    let (id, _) = bus
        .create_server(
            &md(),
            NewServer {
                catalog_id,
                name: name.into(),
                config: BTreeMap::new(),
                secrets: BTreeMap::new(),
                restart_policy: Default::default(),
            },
        )
        .await
        .unwrap();
    id
}

fn level(value: &str) -> ServerConfigPatch {
    ServerConfigPatch {
        config: BTreeMap::from([("LEVEL".to_owned(), Some(value.to_owned()))]),
        ..ServerConfigPatch::default()
    }
}

/// (event_type, sequence) of a server's stream, in order.
async fn stream(pool: &Pool, id: Uuid) -> Vec<(String, i64)> {
    pool.get()
        .await
        .unwrap()
        .query(
            "SELECT event_type, sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence",
            &[&id.to_string()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_on_a_stale_cached_state_is_decided_again_on_the_stored_one() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(8).unwrap();
    let (a, b) = (process(&pool), process(&pool));
    let id = server(&a).await;

    // Valid on A's cached state, refused on the stored one: the append at A's stale
    // sequence collides, and the retry on the stored state refuses it.
    b.server_lifecycle(&md(), id.into(), LifecycleAction::Disable)
        .await
        .unwrap();
    let start = a
        .server_lifecycle(&md(), id.into(), LifecycleAction::Start)
        .await;
    assert!(
        matches!(start, Err(AppError::Server(ServerError::Disabled { .. }))),
        "start on a server another process disabled: {start:?}"
    );

    // Refused on A's cached state (A saw it disabled), valid on the stored one: the
    // refusal is checked against the store before it is reported.
    a.load_server(id.into()).await.unwrap();
    b.server_lifecycle(&md(), id.into(), LifecycleAction::Enable)
        .await
        .unwrap();
    a.server_lifecycle(&md(), id.into(), LifecycleAction::Start)
        .await
        .expect("start on a server another process enabled");

    // A no-op on A's cached state (LEVEL is "x" there), a change on the stored one.
    a.update_server_config(&md(), id.into(), level("x"))
        .await
        .unwrap();
    b.update_server_config(&md(), id.into(), level("y"))
        .await
        .unwrap();
    let receipt = a
        .update_server_config(&md(), id.into(), level("x"))
        .await
        .unwrap();
    assert!(
        receipt.position.is_some(),
        "setting x over another process's y must record a change"
    );
    let stored = b.load_server(id.into()).await.unwrap();
    assert_eq!(stored.config.get("LEVEL").map(String::as_str), Some("x"));

    let types: Vec<String> = stream(&pool, id).await.into_iter().map(|e| e.0).collect();
    assert_eq!(
        types,
        [
            "ServerCreated",
            "ServerDisabled",
            "ServerEnabled",
            "ServerStartRequested",
            "ServerConfigUpdated",
            "ServerConfigUpdated",
            "ServerConfigUpdated",
        ],
        "each decision was recorded once, on the state it was decided on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_true_no_op_records_nothing_and_reads_stay_current() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(8).unwrap();
    let (a, b) = (process(&pool), process(&pool));
    let id = server(&a).await;
    a.update_server_config(&md(), id.into(), level("x"))
        .await
        .unwrap();
    let again = a
        .update_server_config(&md(), id.into(), level("x"))
        .await
        .unwrap();
    assert_eq!(
        again.position, None,
        "setting the same value changes nothing"
    );
    assert_eq!(stream(&pool, id).await.len(), 2);

    // What A reads for decisions outside a command is the stored state, not its cache.
    b.update_server_config(&md(), id.into(), level("z"))
        .await
        .unwrap();
    let seen = a.load_server(id.into()).await.unwrap();
    assert_eq!(seen.config.get("LEVEL").map(String::as_str), Some("z"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouped_appends_give_every_command_its_own_positions() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(16).unwrap();
    let bus = Arc::new(process(&pool));
    let mut ids = Vec::new();
    let (catalog_id, _) = bus
        .register_catalog_entry(&md(), definition())
        .await
        .unwrap();
    for n in 0..48 {
        let (id, _) = bus
            .create_server(
                &md(),
                NewServer {
                    catalog_id,
                    name: format!("s{n}"),
                    config: BTreeMap::new(),
                    secrets: BTreeMap::new(),
                    restart_policy: Default::default(),
                },
            )
            .await
            .unwrap();
        ids.push(id);
    }
    // 48 writers at once, 5 changes each: their appends meet in groups.
    let barrier = Arc::new(Barrier::new(ids.len()));
    let tasks: Vec<_> = ids
        .iter()
        .map(|&id| {
            let (bus, barrier) = (bus.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let mut positions = Vec::new();
                for round in 0..5 {
                    let receipt = bus
                        .update_server_config(&md(), id, level(&format!("{id}-{round}")))
                        .await
                        .unwrap();
                    positions.push(receipt.position.expect("a change"));
                }
                (id, positions)
            })
        })
        .collect();
    let client = pool.get().await.unwrap();
    let mut shared_transactions = 0;
    for task in tasks {
        let (id, positions) = task.await.unwrap();
        for (round, position) in positions.iter().enumerate() {
            let row = client
                .query_one(
                    "SELECT aggregate_id, sequence, payload::text, \
                     (SELECT count(DISTINCT aggregate_id) FROM events o \
                      WHERE o.transaction_id = e.transaction_id) \
                     FROM events e WHERE global_position = $1",
                    &[position],
                )
                .await
                .unwrap();
            assert_eq!(
                row.get::<_, String>(0),
                id.to_string(),
                "position {position}"
            );
            assert_eq!(row.get::<_, i64>(1), round as i64 + 2);
            assert!(row.get::<_, String>(2).contains(&format!("{id}-{round}")));
            if row.get::<_, i64>(3) > 1 {
                shared_transactions += 1;
            }
        }
        let sequences: Vec<i64> = stream(&pool, id.uuid())
            .await
            .into_iter()
            .map(|e| e.1)
            .collect();
        assert_eq!(sequences, (1..=6).collect::<Vec<_>>(), "gap-free");
    }
    assert!(
        shared_transactions > 0,
        "48 concurrent writers never shared a commit: grouping was not exercised"
    );
}

/// A repository that counts the reads the command bus makes of it.
#[derive(Clone)]
struct CountingReads {
    inner: PostgresEventRepository,
    reads: Arc<AtomicUsize>,
}

impl PersistedEventRepository for CountingReads {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, serde_json::Value, usize)>,
    ) -> Result<(), PersistenceError> {
        self.inner.persist::<A>(events, snapshot_update).await
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.stream_all_events::<A>().await
    }
}

/// A config change is checked against the server's catalog entry as this process has it
/// cached, confirmed by the append itself: once the server is known, a change is its
/// append and no read.
#[tokio::test]
async fn a_config_change_reads_nothing_before_it_writes() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(4).unwrap();
    let reads = Arc::new(AtomicUsize::new(0));
    let bus = CommandBus::new(
        CountingReads {
            inner: PostgresEventRepository::new(pool.clone()),
            reads: Arc::clone(&reads),
        },
        Arc::new(MasterKeyCipher::new(MasterKey::generate())),
    );
    let (catalog_id, _) = bus
        .register_catalog_entry(&md(), definition())
        .await
        .unwrap();
    let id = server_of(&bus, catalog_id, "counted").await;
    reads.store(0, Ordering::SeqCst);
    for n in 0..5 {
        bus.update_server_config(&md(), id, level(&format!("v{n}")))
            .await
            .unwrap();
    }
    assert_eq!(reads.load(Ordering::SeqCst), 0, "reads of the store");
    assert_eq!(stream(&pool, id.uuid()).await.len(), 6);
}

/// The catalog entry a process has cached is removed by another process: the config
/// change decided on the cached entry is refused by its own append, decided again on the
/// stored entry, and refused for the reason that entry gives. Nothing is recorded.
#[tokio::test]
async fn a_config_change_on_an_entry_another_process_removed_is_refused() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(8).unwrap();
    let (a, b) = (process(&pool), process(&pool));
    let id = server(&a).await;
    a.update_server_config(&md(), id.into(), level("x"))
        .await
        .unwrap();
    let catalog_id = a.load_server(id.into()).await.unwrap().catalog_id.unwrap();
    b.remove_catalog_entry(&md(), catalog_id.into())
        .await
        .unwrap();
    let refused = a
        .update_server_config(&md(), id.into(), level("y"))
        .await
        .unwrap_err();
    match refused {
        AppError::Invalid(fields) => {
            assert_eq!(fields[0].field, "catalog_id");
            assert!(
                fields[0].message.contains("removed"),
                "{}",
                fields[0].message
            );
        }
        other => panic!("refused as {other:?}"),
    }
    assert_eq!(stream(&pool, id).await.len(), 2, "nothing recorded");
}

/// Another process publishes a new version of the entry and creates a server on it: this
/// process, whose cached entry predates that version, reads the entry again instead of
/// refusing the change for a version it has not seen.
#[tokio::test]
async fn a_config_change_on_a_version_the_cached_entry_predates_is_decided_on_the_stored_entry() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(8).unwrap();
    let (a, b) = (process(&pool), process(&pool));
    let (catalog_id, _) = a.register_catalog_entry(&md(), definition()).await.unwrap();
    let mut second = definition();
    second.description = "version 2".into();
    b.update_catalog_entry(&md(), catalog_id, second)
        .await
        .unwrap();
    let id = server_of(&b, catalog_id, "pinned-to-2").await;
    a.update_server_config(&md(), id, level("x")).await.unwrap();
    assert_eq!(stream(&pool, id.uuid()).await.len(), 2);
}
