//! The event store's rules, against a real PostgreSQL: optimistic concurrency under racing
//! writers, gap-free feed order under out-of-order commits, append-only enforcement.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use berth_application::commands::CONFLICT_RETRIES;
use berth_application::ports::{CipherError, SecretCipher};
use berth_application::servers::{NewServer, ServerConfigPatch};
use berth_application::{Actor, AppError, CommandBus, CommandMetadata};
use berth_domain::catalog::{CatalogDefinition, ConfigKey, Resources, RuntimeSpec, Transport};
use berth_domain::server::SealedSecret;
use berth_infrastructure::event_store::PostgresEventRepository;
use berth_infrastructure::feed::{self, Checkpoint, FeedFilter, StoredEvent};
use cqrs_es::persist::{PersistenceError, SerializedEvent};
use secrecy::SecretString;
use tokio::sync::Barrier;
use uuid::Uuid;

/// These tests store no secrets; sealing one would be a test bug.
struct NoSecrets;

impl SecretCipher for NoSecrets {
    fn seal(
        &self,
        _: &str,
        _: Uuid,
        key: &str,
        _: &SecretString,
    ) -> Result<SealedSecret, CipherError> {
        Err(CipherError::UnknownKey(key.into()))
    }
    fn open(
        &self,
        _: &str,
        _: Uuid,
        key: &str,
        _: &SealedSecret,
    ) -> Result<SecretString, CipherError> {
        Err(CipherError::UnknownKey(key.into()))
    }
}

fn definition(keys: usize) -> CatalogDefinition {
    CatalogDefinition {
        name: "racer".into(),
        description: String::new(),
        transport: Transport::Stdio,
        runtime: RuntimeSpec::Process {
            command: "true".into(),
            args: vec![],
        },
        config_schema: (0..keys)
            .map(|i| ConfigKey {
                key: format!("K{i}"),
                description: String::new(),
                required: false,
                secret: false,
                default: None,
            })
            .collect(),
        resources: Resources::default(),
        gateway: Default::default(),
    }
}

fn event(aggregate_id: &str, sequence: usize) -> SerializedEvent {
    SerializedEvent::new(
        aggregate_id.into(),
        sequence,
        "test".into(),
        "Happened".into(),
        "1".into(),
        serde_json::json!({ "n": sequence }),
        serde_json::json!({ "actor": "system:test" }),
    )
}

/// Every event stored so far, in feed order. Feed reads wait behind the oldest open
/// transaction of the whole cluster (other tests' too), so this reads until the event at
/// the current head has been delivered rather than stopping at the first empty batch.
async fn all_events(pool: &deadpool_postgres::Pool) -> Vec<StoredEvent> {
    let client = pool.get().await.unwrap();
    let head = feed::head_position(&client).await.unwrap();
    read_until(&client, Checkpoint::START, |seen| {
        head == 0 || seen.iter().any(|e| e.position == head)
    })
    .await
}

async fn read_until(
    client: &deadpool_postgres::Client,
    mut at: Checkpoint,
    done: impl Fn(&[StoredEvent]) -> bool,
) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done(&out) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the feed never delivered the head"
        );
        let batch = feed::read_after(client, at, 1000, &FeedFilter::default())
            .await
            .unwrap();
        match batch.last() {
            Some(last) => at = last.checkpoint(),
            None => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
        out.extend(batch);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_on_one_aggregate_lose_nothing_and_merge_nothing() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(40).unwrap();
    // Inside one bus, commands on one aggregate take turns; four buses (as four Berth
    // processes would) race each other. They share one repository, so their appends
    // also meet in the same group commits.
    let repo = PostgresEventRepository::new(pool.clone());
    let buses: Vec<_> = (0..4)
        .map(|_| Arc::new(CommandBus::new(repo.clone(), Arc::new(NoSecrets))))
        .collect();
    let bus = buses[0].clone();
    let md = CommandMetadata::new(Actor::admin());
    let (catalog_id, _) = bus
        .register_catalog_entry(&md, definition(32))
        .await
        .unwrap();
    let (server_id, _) = bus
        .create_server(
            &md,
            NewServer {
                catalog_id,
                name: "hot".into(),
                config: BTreeMap::new(),
                secrets: BTreeMap::new(),
                restart_policy: Default::default(),
            },
        )
        .await
        .unwrap();

    let retries_before = CONFLICT_RETRIES.load(Ordering::Relaxed);
    let barrier = Arc::new(Barrier::new(32));
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (bus, barrier) = (buses[i % buses.len()].clone(), barrier.clone());
            tokio::spawn(async move {
                let md = CommandMetadata::new(Actor::admin());
                let patch = ServerConfigPatch {
                    config: BTreeMap::from([(format!("K{i}"), Some(format!("v{i}")))]),
                    secrets: BTreeMap::new(),
                    restart_policy: None,
                };
                barrier.wait().await;
                (i, bus.update_server_config(&md, server_id, patch).await)
            })
        })
        .collect();
    let mut accepted = HashMap::new();
    for task in tasks {
        let (i, result) = task.await.unwrap();
        match result {
            Ok(receipt) => {
                accepted.insert(i, receipt.position.expect("a change was written"));
            }
            Err(AppError::Conflict) => {}
            Err(other) => panic!("writer {i} failed with {other}"),
        }
    }
    let retries = CONFLICT_RETRIES.load(Ordering::Relaxed) - retries_before;
    assert!(
        retries > 0,
        "32 simultaneous writers in four buses never collided: the race was not exercised"
    );
    assert!(!accepted.is_empty());

    let stream: Vec<_> = all_events(&pool)
        .await
        .into_iter()
        .filter(|e| e.aggregate_id == server_id.to_string())
        .collect();
    let sequences: Vec<i64> = stream.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        (1..=accepted.len() as i64 + 1).collect::<Vec<_>>(),
        "gap-free"
    );
    let positions: HashSet<i64> = stream.iter().map(|e| e.position).collect();
    for (i, position) in &accepted {
        assert!(positions.contains(position), "accepted write {i} is stored");
    }
    // Every accepted write is in the final state: retries reloaded, nothing was merged blindly.
    let server = bus.load_server(server_id).await.unwrap();
    let expected: BTreeMap<String, String> = accepted
        .keys()
        .map(|i| (format!("K{i}"), format!("v{i}")))
        .collect();
    assert_eq!(server.config, expected);
}

#[tokio::test]
async fn a_stale_sequence_is_a_conflict_and_writes_nothing() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(4).unwrap();
    let mut client = pool.get().await.unwrap();
    PostgresEventRepository::append(&mut client, &[event("a", 1), event("a", 2)])
        .await
        .unwrap();
    let err = PostgresEventRepository::append(&mut client, &[event("a", 3), event("a", 2)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, PersistenceError::OptimisticLockError),
        "{err:?}"
    );
    let stored = all_events(&pool).await;
    assert_eq!(
        stored.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_feed_never_skips_an_event_that_commits_behind_later_positions() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(20).unwrap();

    // A transaction takes a low position and holds it open while others commit after it.
    let mut held_client = pool.get().await.unwrap();
    let held = held_client.transaction().await.unwrap();
    let held_positions = PostgresEventRepository::append_in_transaction(&held, &[event("held", 1)])
        .await
        .unwrap();

    let reader_pool = pool.clone();
    let reader = tokio::spawn(async move {
        let client = reader_pool.get().await.unwrap();
        let mut seen = Vec::new();
        let mut at = Checkpoint::START;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while seen.len() < 1 + 8 * 50 && tokio::time::Instant::now() < deadline {
            let batch = feed::read_after(&client, at, 37, &FeedFilter::default())
                .await
                .unwrap();
            if let Some(last) = batch.last() {
                at = last.checkpoint();
            } else {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            seen.extend(batch);
        }
        seen
    });

    let writers: Vec<_> = (0..8)
        .map(|w| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut client = pool.get().await.unwrap();
                for seq in 1..=50 {
                    PostgresEventRepository::append(&mut client, &[event(&format!("w{w}"), seq)])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    // A reader going by position alone would already be past the held event.
    let by_position = pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM events WHERE global_position > $1",
            &[&held_positions[0]],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(
        by_position, 400,
        "the later writers committed past the held position"
    );
    held.commit().await.unwrap();

    let seen = reader.await.unwrap();
    assert_eq!(seen.len(), 401, "every event delivered");
    let ids: HashSet<Uuid> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 401, "each exactly once");
    assert!(
        seen.iter().any(|e| e.aggregate_id == "held"),
        "the late commit was not skipped"
    );
    let mut last_seq: HashMap<&str, i64> = HashMap::new();
    for e in &seen {
        let prev = last_seq.insert(&e.aggregate_id, e.sequence).unwrap_or(0);
        assert_eq!(e.sequence, prev + 1, "stream {} in order", e.aggregate_id);
    }
}

#[tokio::test]
async fn the_events_table_refuses_update_delete_and_truncate() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(2).unwrap();
    let mut client = pool.get().await.unwrap();
    PostgresEventRepository::append(&mut client, &[event("a", 1)])
        .await
        .unwrap();
    for statement in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let err = client.batch_execute(statement).await.unwrap_err();
        assert!(
            err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"),
            "{statement}: {err:?}"
        );
    }
    assert_eq!(all_events(&pool).await.len(), 1);
}

#[tokio::test]
async fn has_reached_and_cursor_translation_follow_feed_order() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(2).unwrap();
    let mut client = pool.get().await.unwrap();
    let p = PostgresEventRepository::append(&mut client, &[event("a", 1), event("a", 2)])
        .await
        .unwrap();
    let cp = feed::checkpoint_at_position(&client, p[0]).await.unwrap();
    assert_eq!(cp.position, p[0]);
    assert!(feed::has_reached(&client, cp, p[0]).await.unwrap());
    assert!(!feed::has_reached(&client, cp, p[1]).await.unwrap());
    assert!(!feed::has_reached(&client, cp, p[1] + 100).await.unwrap());
    let rest = read_until(&client, cp, |seen| !seen.is_empty()).await;
    assert_eq!(rest.iter().map(|e| e.position).collect::<Vec<_>>(), [p[1]]);
}
