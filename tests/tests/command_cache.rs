//! The command bus keeps aggregates in memory and writes concurrent commands in groups.
//! These tests play two Berth processes (two buses) on one database, so one bus's
//! cached state goes stale behind its back, and check that no command is ever decided
//! on a stale state; and that grouped appends tell each command its own positions.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_application::servers::{LifecycleAction, NewServer, ServerConfigPatch};
use berth_application::{Actor, AppError, CommandBus, CommandMetadata};
use berth_domain::catalog::{CatalogDefinition, ConfigKey, Resources, RuntimeSpec, Transport};
use berth_domain::server::ServerError;
use berth_infrastructure::cipher::{MasterKey, MasterKeyCipher};
use berth_infrastructure::event_store::PostgresEventRepository;
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
    let (id, _) = bus
        .create_server(
            &md(),
            NewServer {
                catalog_id,
                name: "cached".into(),
                config: BTreeMap::new(),
                secrets: BTreeMap::new(),
                restart_policy: Default::default(),
            },
        )
        .await
        .unwrap();
    id.uuid()
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
