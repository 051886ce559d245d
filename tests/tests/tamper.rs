//! Tamper evidence against a real PostgreSQL: a store written through the command bus
//! verifies clean; a row altered or deleted behind the append-only trigger's back (as a
//! superuser, with `session_replication_role = replica`) is named by `verify`.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_application::ports::{CipherError, SecretCipher};
use berth_application::servers::{NewServer, ServerConfigPatch};
use berth_application::{Actor, CommandBus, CommandMetadata};
use berth_domain::catalog::{CatalogDefinition, ConfigKey, Resources, RuntimeSpec, Transport};
use berth_domain::server::SealedSecret;
use berth_infrastructure::event_store::PostgresEventRepository;
use berth_infrastructure::verify::{verify, BreakKind, ChainBreak};
use cqrs_es::persist::SerializedEvent;
use deadpool_postgres::Pool;
use secrecy::SecretString;
use uuid::Uuid;

/// These tests store no secrets.
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

fn definition() -> CatalogDefinition {
    CatalogDefinition {
        name: "tamper".into(),
        description: String::new(),
        transport: Transport::Stdio,
        runtime: RuntimeSpec::Process {
            command: "true".into(),
            args: vec![],
        },
        config_schema: vec![ConfigKey {
            key: "K".into(),
            description: String::new(),
            required: false,
            secret: false,
            default: None,
        }],
        resources: Resources::default(),
        gateway: Default::default(),
    }
}

/// A catalog entry and two servers, one of which gets three config updates: three
/// streams, the longest with four events. Returns that server's id.
async fn written_store(pool: &Pool) -> String {
    let bus = CommandBus::new(
        PostgresEventRepository::new(pool.clone()),
        Arc::new(NoSecrets),
    );
    let md = CommandMetadata::new(Actor::admin());
    let (catalog_id, _) = bus.register_catalog_entry(&md, definition()).await.unwrap();
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        let (id, _) = bus
            .create_server(
                &md,
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
        ids.push(id);
    }
    for i in 0..3 {
        let patch = ServerConfigPatch {
            config: BTreeMap::from([("K".to_string(), Some(format!("v{i}")))]),
            secrets: BTreeMap::new(),
            restart_policy: None,
        };
        bus.update_server_config(&md, ids[0], patch).await.unwrap();
    }
    ids[0].to_string()
}

/// The global position of `aggregate_id`'s event `sequence`.
async fn position_of(pool: &Pool, aggregate_id: &str, sequence: i64) -> i64 {
    let client = pool.get().await.unwrap();
    client
        .query_one(
            "SELECT global_position FROM events WHERE aggregate_id = $1 AND sequence = $2",
            &[&aggregate_id, &sequence],
        )
        .await
        .unwrap()
        .get(0)
}

/// Runs `sql` as the (superuser) test connection with triggers off, as an attacker with
/// database access could.
async fn behind_the_triggers(
    pool: &Pool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) {
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL session_replication_role = replica")
        .await
        .unwrap();
    assert_eq!(tx.execute(sql, params).await.unwrap(), 1);
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_store_written_through_the_command_bus_verifies_clean() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(2).unwrap();
    written_store(&pool).await;
    let report = verify(&pool).await.unwrap();
    assert_eq!(report.first_break, None);
    assert_eq!(report.streams, 3);
    let client = pool.get().await.unwrap();
    let stored: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(report.events, u64::try_from(stored).unwrap());
}

#[tokio::test]
async fn the_append_only_trigger_still_refuses_changes() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(2).unwrap();
    written_store(&pool).await;
    let client = pool.get().await.unwrap();
    let err = client
        .execute("UPDATE events SET hash = NULL", &[])
        .await
        .unwrap_err();
    let message = err.as_db_error().map(|e| e.message().to_owned());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("append-only")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_altered_payload_is_named_by_verify() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(2).unwrap();
    let server = written_store(&pool).await;
    let position = position_of(&pool, &server, 2).await;
    behind_the_triggers(
        &pool,
        "UPDATE events SET payload = jsonb_set(payload, '{tampered}', 'true') \
         WHERE global_position = $1",
        &[&position],
    )
    .await;

    let found = verify(&pool).await.unwrap().first_break.expect("a break");
    assert_eq!(
        found,
        ChainBreak {
            position,
            aggregate_type: found.aggregate_type.clone(),
            aggregate_id: server,
            sequence: 2,
            kind: BreakKind::HashMismatch,
        }
    );
    assert!(found.to_string().contains("altered"), "{found}");
}

#[tokio::test]
async fn a_re_hashed_row_breaks_the_next_link() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(2).unwrap();
    let server = written_store(&pool).await;
    let position = position_of(&pool, &server, 2).await;
    // The attacker alters the row, then recomputes its hash with the database's own
    // function; the next event still points at the old hash.
    behind_the_triggers(
        &pool,
        "UPDATE events SET metadata = '{}' WHERE global_position = $1",
        &[&position],
    )
    .await;
    behind_the_triggers(
        &pool,
        "UPDATE events \
         SET hash = sha256(coalesce(prev_hash, '\\x'::bytea) || events_canonical_bytes(events)) \
         WHERE global_position = $1",
        &[&position],
    )
    .await;

    let found = verify(&pool).await.unwrap().first_break.expect("a break");
    assert_eq!(
        (found.sequence, &found.kind),
        (3, &BreakKind::BrokenLink),
        "{found}"
    );
    assert_eq!(found.aggregate_id, server);
}

#[tokio::test]
async fn a_deleted_event_is_reported_as_missing() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(2).unwrap();
    let server = written_store(&pool).await;
    let deleted = position_of(&pool, &server, 2).await;
    let next = position_of(&pool, &server, 3).await;
    behind_the_triggers(
        &pool,
        "DELETE FROM events WHERE global_position = $1",
        &[&deleted],
    )
    .await;

    let report = verify(&pool).await.unwrap();
    let found = report.first_break.expect("a break");
    assert_eq!(found.position, next);
    assert_eq!(found.aggregate_id, server);
    assert_eq!(found.sequence, 3);
    assert_eq!(found.kind, BreakKind::Missing { expected: 2 });
    assert!(
        found.to_string().contains("sequence 2 is missing"),
        "{found}"
    );
}

fn event(aggregate_id: &str, sequence: usize) -> SerializedEvent {
    SerializedEvent::new(
        aggregate_id.into(),
        sequence,
        "test".into(),
        "Happened".into(),
        "1".into(),
        serde_json::json!({ "n": sequence, "text": "ünïcode\u{1f}" }),
        serde_json::json!({ "actor": "system:test" }),
    )
}

#[tokio::test]
async fn a_log_longer_than_one_batch_is_walked_to_the_end() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(2).unwrap();
    let mut client = pool.get().await.unwrap();
    // One stream in a single 700-event statement (the chain links rows of one INSERT),
    // another in 7 statements of 100.
    let a: Vec<_> = (1..=700).map(|s| event("a", s)).collect();
    PostgresEventRepository::append(&mut client, &a)
        .await
        .unwrap();
    for chunk in (1..=700).collect::<Vec<_>>().chunks(100) {
        let b: Vec<_> = chunk.iter().map(|&s| event("b", s)).collect();
        PostgresEventRepository::append(&mut client, &b)
            .await
            .unwrap();
    }
    let report = verify(&pool).await.unwrap();
    assert_eq!((report.events, report.streams), (1400, 2));
    assert_eq!(report.first_break, None);

    let deleted = position_of(&pool, "b", 500).await;
    behind_the_triggers(
        &pool,
        "DELETE FROM events WHERE global_position = $1",
        &[&deleted],
    )
    .await;
    let found = verify(&pool).await.unwrap().first_break.expect("a break");
    assert_eq!(
        (found.aggregate_id.as_str(), found.sequence, found.kind),
        ("b", 501, BreakKind::Missing { expected: 500 })
    );
}
