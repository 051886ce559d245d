//! `berth events export` / `import` against a real PostgreSQL: a store populated through
//! the API, exported and imported into a fresh database, has the same events (every
//! column, hashes included), the same feed order, the same read models row for row and
//! a clean verify; exporting it again gives the same file byte for byte. Transactions
//! whose positions interleave keep their feed order; `--after` exports exactly what
//! follows; bad input writes nothing; and the imported store takes new commands after
//! the imported positions, on intact chains, with the source's API keys still working.

mod api_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use api_support::{feed_settled, fixture_entry, server_body, Answer, TestApp};
use berth_api::serve::bulk::BULK_OPERATIONS;
use berth_api::serve::runtimes::PROCESS_MANAGER;
use berth_api::{start_server, ServeConfig};
use berth_infrastructure::cipher::MASTER_KEY_FILE;
use berth_infrastructure::db::Database;
use berth_infrastructure::feed::checkpoints::checkpoint_of;
use berth_infrastructure::feed::{self, Checkpoint, FeedFilter};
use berth_infrastructure::transfer::{
    export_data_keys, export_events, import_events, DataKeys, EventLine, ImportOptions,
    ImportReport, TransferError,
};
use berth_infrastructure::verify::{verify, BreakKind};
use berth_projections::Projections;
use berth_tests::test_database;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

/// Every read model, and the owners table the store keeps itself.
const TABLES: [&str; 10] = [
    "catalog_entries",
    "catalog_server_tools",
    "servers",
    "audit_log",
    "audit_target_names",
    "bulk_operations",
    "bulk_targets",
    "users",
    "api_keys",
    "stream_owners",
];

/// Every column of every event, with the transaction the hash covers.
const EVENT_ROWS: &str = "SELECT (to_jsonb(e) - 'transaction_id' - 'origin_transaction_id' \
     || jsonb_build_object('tx', coalesce(e.origin_transaction_id, e.transaction_id)::text))::text \
     FROM events e ORDER BY global_position";

fn options() -> ImportOptions {
    ImportOptions {
        skip_history: vec![PROCESS_MANAGER.to_owned(), BULK_OPERATIONS.to_owned()],
        data_keys: None,
    }
}

async fn export(db: &Database, after: i64) -> Vec<u8> {
    let pool = db.pool(2).expect("a pool");
    let mut out = Vec::new();
    let report = export_events(&pool, after, &mut out).await;
    pool.close();
    report.expect("exporting");
    out
}

async fn import(
    db: &Database,
    file: &[u8],
    options: &ImportOptions,
) -> Result<ImportReport, TransferError> {
    let pool = db.pool(2).expect("a pool");
    let report = import_events(&pool, file, options).await;
    pool.close();
    report
}

async fn rows(db: &Database, query: &str) -> Vec<String> {
    let client = db.connect().await.expect("connecting");
    client
        .query(query, &[])
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn table(db: &Database, name: &str) -> Vec<String> {
    rows(
        db,
        &format!("SELECT to_jsonb(t)::text FROM {name} t ORDER BY 1"),
    )
    .await
}

async fn event_count(db: &Database) -> i64 {
    let client = db.connect().await.expect("connecting");
    client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .expect("counting")
        .get(0)
}

/// The event ids in feed order.
async fn feed_order(db: &Database) -> Vec<Uuid> {
    feed_settled(db).await;
    let pool = db.pool(1).expect("a pool");
    let client = pool.get().await.expect("connecting");
    let mut at = Checkpoint::START;
    let mut ids = Vec::new();
    loop {
        let events = feed::read_after(&client, at, 100, &FeedFilter::default())
            .await
            .expect("reading the feed");
        let Some(last) = events.last() else {
            return ids;
        };
        at = last.checkpoint();
        ids.extend(events.iter().map(|e| e.event_id));
    }
}

async fn verified(db: &Database) -> u64 {
    let pool = db.pool(1).expect("a pool");
    let report = verify(&pool).await.expect("verifying");
    pool.close();
    assert_eq!(report.first_break, None, "{report:?}");
    report.events
}

async fn catch_up(db: &Database) {
    let pool = db.pool(4).expect("a pool");
    Projections::new(db.clone(), pool.clone())
        .catch_up_all()
        .await
        .expect("catching up the projections");
    pool.close();
}

/// The event lines of an export (the signed checkpoints after them left out).
fn lines(file: &[u8]) -> Vec<EventLine> {
    without_checkpoints(file)
        .lines()
        .map(|l| serde_json::from_str(l).expect("an exported line parses"))
        .collect()
}

/// An export's text without its signed checkpoint lines.
fn without_checkpoints(file: &[u8]) -> String {
    String::from_utf8_lossy(file)
        .lines()
        .filter(|l| !l.starts_with("{\"checkpoint\":"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn success(answer: &Answer) {
    assert!(answer.status.is_success(), "unexpected answer: {answer}");
}

/// A user made through the API: its id and first key.
async fn user(app: &TestApp, name: &str, role: &str) -> (String, String) {
    let created = app
        .post("/api/v1/users", &json!({"name": name, "role": role}))
        .await;
    success(&created);
    let id = created.id();
    let key = app
        .post(
            &format!("/api/v1/users/{id}/keys"),
            &json!({"name": "main"}),
        )
        .await;
    success(&key);
    let key = key.json()["key"].as_str().unwrap_or_default().to_owned();
    (id, key)
}

/// A catalog entry (updated once), users and keys, servers with config and secrets, a
/// config update, start and stop requests, a finished bulk operation and a delete.
/// Returns the id of the server that was started and stopped.
async fn populate(app: &TestApp) -> String {
    let entry = app
        .register_fixture("transfer-entry")
        .await
        .expect(201)
        .id();
    let mut changed = fixture_entry("transfer-entry");
    changed["description"] = json!("a fixture, described again");
    success(
        &app.json(Method::PUT, &format!("/api/v1/catalog/{entry}"), &changed)
            .await,
    );
    success(
        &app.command(&format!("/api/v1/catalog/{entry}/publish"))
            .await,
    );
    let (_, ann_key) = user(app, "ann", "operator").await;
    let (bob, _) = user(app, "bob", "viewer").await;
    success(&app.command(&format!("/api/v1/users/{bob}/disable")).await);

    let mut ids = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        let body = server_body(&entry, name, &format!("{name}-secret"));
        ids.push(app.post("/api/v1/servers", &body).await.expect(201).id());
    }
    let body = serde_json::to_vec(&server_body(&entry, "anns", "ann-secret")).expect("a body");
    let anns = app
        .send(
            Method::POST,
            "/api/v1/servers",
            Some(body),
            Some(&ann_key),
            &[],
        )
        .await;
    anns.expect(201);
    let anns = anns.id();

    let alpha = &ids[0];
    let patch = json!({"config": {"MODE": "slow"}, "secrets": {"API_TOKEN": "rotated"}});
    success(
        &app.json(Method::PATCH, &format!("/api/v1/servers/{alpha}"), &patch)
            .await,
    );
    success(&app.command(&format!("/api/v1/servers/{alpha}/start")).await);
    success(&app.command(&format!("/api/v1/servers/{alpha}/stop")).await);

    let bulk = app
        .post(
            "/api/v1/bulk",
            &json!({"operation": "start", "server_ids": &ids[1..]}),
        )
        .await;
    bulk.expect(202);
    let (bulk_id, position) = (bulk.id(), bulk.position());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = app
            .get(&format!("/api/v1/bulk/{bulk_id}?min_position={position}"))
            .await
            .json();
        if view["state"] != "running" {
            assert_eq!(view["state"], "completed", "{view}");
            break;
        }
        assert!(Instant::now() < deadline, "the bulk operation never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let deleted = app
        .send(
            Method::DELETE,
            &format!("/api/v1/servers/{anns}"),
            None,
            Some(&ann_key),
            &[],
        )
        .await;
    success(&deleted);
    alpha.clone()
}

/// A data directory the cluster's user can reach, holding a copy of `from`'s master key.
fn data_dir_with_master_key(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("berth-transfer-")
        .tempdir_in("/tmp")
        .expect("a data directory");
    std::fs::copy(from.join(MASTER_KEY_FILE), dir.path().join(MASTER_KEY_FILE))
        .expect("copying the master key");
    dir
}

#[tokio::test]
async fn a_round_trip_yields_the_same_events_read_models_and_file() {
    let mut source_dir = PathBuf::new();
    let app = TestApp::spawn_with(|config| source_dir = config.data_dir.clone()).await;
    let alpha = populate(&app).await;
    app.feed_settled().await;
    let source = app.db.database();
    catch_up(&source).await;

    let file = export(&source, 0).await;
    let pool = source.pool(1).expect("a pool");
    let mut keys_file = Vec::new();
    let keys = export_data_keys(&pool, &mut keys_file).await.expect("keys");
    pool.close();
    assert!(keys >= 2, "the credential key and the owners' keys: {keys}");
    let exported = lines(&file);
    assert_eq!(exported.len() as i64, event_count(&source).await);
    let last = exported.last().map(|l| l.position);

    let target_db = test_database().await;
    let target = target_db.database();
    let mut with_keys = options();
    with_keys.data_keys = Some(DataKeys::read(&keys_file[..]).await.expect("reading keys"));
    let report = import(&target, &file, &with_keys).await.expect("importing");
    assert_eq!(report.events, exported.len() as u64);
    assert_eq!(report.last_position, last);

    // Side effects are not repeated: the process manager and the bulk driver start at
    // the last imported event; projections start from the first.
    let pool = target.pool(1).expect("a pool");
    let client = pool.get().await.expect("connecting");
    for name in [PROCESS_MANAGER, BULK_OPERATIONS] {
        let at = checkpoint_of(&client, name).await.expect("a checkpoint");
        assert_eq!(Some(at.position), last, "{name}");
        let pending = feed::read_after(&client, at, 1, &FeedFilter::default())
            .await
            .expect("reading the feed");
        assert!(pending.is_empty(), "{name} would see {pending:?}");
    }
    for name in berth_projections::PROJECTION_NAMES {
        let at = checkpoint_of(&client, name).await.expect("a checkpoint");
        assert_eq!(at, Checkpoint::START, "{name}");
    }
    drop(client);
    pool.close();
    catch_up(&target).await;

    assert_eq!(
        rows(&target, EVENT_ROWS).await,
        rows(&source, EVENT_ROWS).await
    );
    assert_eq!(feed_order(&target).await, feed_order(&source).await);
    for name in TABLES {
        let rows = table(&source, name).await;
        // Tools are discovered by a runtime, which these tests do not run.
        assert!(!rows.is_empty() || name == "catalog_server_tools", "{name}");
        assert_eq!(table(&target, name).await, rows, "{name}");
    }
    assert_eq!(
        table(&target, "owner_data_keys").await,
        table(&source, "owner_data_keys").await
    );
    assert_eq!(verified(&target).await, exported.len() as u64);
    // The same events, byte for byte; the signed checkpoints are each store's own.
    let again = export(&target, 0).await;
    assert!(
        without_checkpoints(&again) == without_checkpoints(&file),
        "exporting the imported store gives another file"
    );

    // With the master key copied, the imported store serves the source's API keys and
    // takes new commands after the imported positions, on intact chains.
    let highest = exported.iter().map(|l| l.position).max().unwrap_or(0);
    let target_dir = data_dir_with_master_key(&source_dir);
    let mut config = ServeConfig::new(target_dir.path())
        .with_database_url(target_db.url())
        .with_listen("127.0.0.1:0");
    config.drive_runtime = false;
    config.rate_limit.per_second = 0;
    let server = start_server(config)
        .await
        .expect("serving the imported store");
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("{}/api/v1/catalog", server.base_url()))
        .bearer_auth(app.token())
        .json(&fixture_entry("after-import"))
        .send()
        .await
        .expect("sending");
    assert_eq!(answer.status(), 201, "the source's admin key works");
    let answer: Value = answer.json().await.expect("a body");
    let position = answer["position"].as_i64().unwrap_or_default();
    assert!(position > highest, "{position} after {highest}");
    // An imported aggregate loads from its imported events and takes a command.
    let disabled = http
        .post(format!(
            "{}/api/v1/servers/{alpha}/disable",
            server.base_url()
        ))
        .bearer_auth(app.token())
        .send()
        .await
        .expect("sending");
    assert_eq!(disabled.status(), 202);
    server.stop().await.expect("stopping");
    let events = verified(&target).await;
    assert!(events > exported.len() as u64);
    app.stop().await;
}

/// Appends one event to `stream` at `sequence` inside whatever transaction `client` has
/// open; returns its position.
async fn append(client: &tokio_postgres::Client, stream: &str, sequence: i64) -> i64 {
    client
        .query_one(
            "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) \
             VALUES ($1, 'probe', $2, $3, 'Probed', '1', '{\"n\": 1.50}', '{\"actor\": \"test\"}') \
             RETURNING global_position",
            &[&Uuid::new_v4(), &stream, &sequence],
        )
        .await
        .expect("appending")
        .get(0)
}

#[tokio::test]
async fn interleaved_transactions_keep_their_feed_order() {
    let source_db = test_database().await;
    let source = source_db.database();
    let first = source.connect().await.expect("connecting");
    let second = source.connect().await.expect("connecting");
    first.batch_execute("BEGIN").await.expect("begin");
    second.batch_execute("BEGIN").await.expect("begin");
    // The first transaction takes its id first, then positions alternate; the second
    // commits first. Feed order: 1, 3, 5 (first), then 2, 4 (second).
    let mut positions = vec![append(&first, "a", 1).await];
    positions.push(append(&second, "b", 1).await);
    positions.push(append(&first, "a", 2).await);
    positions.push(append(&second, "b", 2).await);
    second.batch_execute("COMMIT").await.expect("commit");
    positions.push(append(&first, "c", 1).await);
    first.batch_execute("COMMIT").await.expect("commit");
    // And one more on its own, chained to the first transaction's stream.
    append(&source.connect().await.expect("connecting"), "a", 3).await;
    let order = feed_order(&source).await;
    let by_position = rows(
        &source,
        "SELECT event_id::text FROM events ORDER BY global_position",
    )
    .await;
    assert_ne!(
        order.iter().map(Uuid::to_string).collect::<Vec<_>>(),
        by_position,
        "the feed order differs from position order"
    );

    let file = export(&source, 0).await;
    let exported: Vec<i64> = lines(&file).iter().map(|l| l.position).collect();
    let (p1, p2, p3, p4, p5) = (
        positions[0],
        positions[1],
        positions[2],
        positions[3],
        positions[4],
    );
    assert_eq!(exported, vec![p1, p3, p5, p2, p4, p5 + 1]);

    let target_db = test_database().await;
    let target = target_db.database();
    let report = import(&target, &file, &options()).await.expect("importing");
    assert_eq!((report.events, report.transactions), (6, 2));
    assert_eq!(feed_order(&target).await, order);
    assert_eq!(
        rows(&target, EVENT_ROWS).await,
        rows(&source, EVENT_ROWS).await
    );
    verified(&target).await;
    assert!(export(&target, 0).await == file);
    // The payload's JSON is kept exactly (`1.50`, not `1.5`).
    assert!(String::from_utf8_lossy(&file).contains(r#""payload":{"n": 1.50}"#));

    // The origin transaction id is covered by the hash like any other column.
    let pool = target.pool(1).expect("a pool");
    let mut client = pool.get().await.expect("connecting");
    let tx = client.transaction().await.expect("begin");
    tx.batch_execute(
        "SET LOCAL session_replication_role = replica; \
         UPDATE events SET origin_transaction_id = (origin_transaction_id::text::bigint + 1)::text::xid8 \
         WHERE global_position = 2",
    )
    .await
    .expect("altering an imported event");
    tx.commit().await.expect("commit");
    drop(client);
    let report = verify(&pool).await.expect("verifying");
    let found = report.first_break.expect("a break");
    assert_eq!((found.position, found.kind), (p2, BreakKind::HashMismatch));
}

#[tokio::test]
async fn export_after_a_position_holds_exactly_the_events_after_it() {
    let db = test_database().await;
    let source = db.database();
    let client = source.connect().await.expect("connecting");
    for sequence in 1..=5 {
        append(&client, "after", sequence).await;
    }
    append(&client, "other", 1).await;
    feed_settled(&source).await;
    let full = export(&source, 0).await;
    let all = lines(&full);
    assert_eq!(all.len(), 6);
    let text = String::from_utf8_lossy(&full).into_owned();
    for (index, line) in all.iter().enumerate() {
        let after = export(&source, line.position).await;
        let want: Vec<&str> = text.lines().skip(index + 1).collect();
        assert_eq!(
            String::from_utf8_lossy(&after).lines().collect::<Vec<_>>(),
            want,
            "after {}",
            line.position
        );
    }
    assert!(export(&source, all[5].position).await.is_empty());
}

/// A store of two streams, exported.
async fn small_export() -> Vec<u8> {
    let db = test_database().await;
    let source = db.database();
    let client = source.connect().await.expect("connecting");
    for sequence in 1..=3 {
        append(&client, "bad-input", sequence).await;
    }
    append(&client, "other", 1).await;
    feed_settled(&source).await;
    export(&source, 0).await
}

/// `file` with line `index` (from 0) replaced by what `change` makes of it.
fn altered(file: &[u8], index: usize, change: impl Fn(&str) -> String) -> Vec<u8> {
    let text = String::from_utf8_lossy(file);
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[index] = change(&lines[index]);
    (lines.join("\n") + "\n").into_bytes()
}

#[tokio::test]
async fn bad_input_writes_nothing() {
    let file = small_export().await;
    let positions: Vec<i64> = lines(&file).iter().map(|l| l.position).collect();
    let target_db = test_database().await;
    let target = target_db.database();
    let untouched = |what: &'static str| {
        let target = target.clone();
        async move {
            assert_eq!(event_count(&target).await, 0, "{what}");
            assert!(
                table(&target, "subscription_checkpoints").await.is_empty(),
                "{what}"
            );
            assert!(table(&target, "stream_owners").await.is_empty(), "{what}");
        }
    };

    let exported = lines(&file);
    let broken = altered(&file, 2, |l| l.replacen(',', ",,", 1));
    let error = import(&target, &broken, &options()).await.unwrap_err();
    assert!(
        matches!(error, TransferError::InvalidLine { line: 3, .. }),
        "{error}"
    );
    assert!(error.to_string().starts_with("line 3"), "{error}");
    untouched("malformed JSON").await;

    let event_id = format!(r#""event_id":"{}","#, exported[1].event_id);
    let missing = altered(&file, 1, |l| l.replace(&event_id, ""));
    let error = import(&target, &missing, &options()).await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("line 2: missing field `event_id`"),
        "{error}"
    );
    untouched("a missing field").await;

    let wrong = altered(&file, 3, |l| {
        l.replace(r#""sequence":1"#, r#""sequence":"one""#)
    });
    let error = import(&target, &wrong, &options()).await.unwrap_err();
    assert!(
        error.to_string().starts_with("line 4, field `sequence`: "),
        "{error}"
    );
    untouched("a wrongly typed field").await;

    let tampered = altered(&file, 1, |l| l.replace("1.50", "2.50"));
    let error = import(&target, &tampered, &options()).await.unwrap_err();
    assert!(
        matches!(
            error,
            TransferError::Altered { line: 2, position, field: "hash" } if position == positions[1]
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains(&format!("position {}", positions[1])),
        "{error}"
    );
    untouched("an altered payload").await;

    let prev_hash = exported[2].prev_hash.clone().unwrap_or_default();
    let relinked = altered(&file, 2, |l| l.replace(&prev_hash, &"00".repeat(32)));
    let error = import(&target, &relinked, &options()).await.unwrap_err();
    assert!(
        matches!(
            error,
            TransferError::Altered {
                line: 3,
                field: "prev_hash",
                ..
            }
        ),
        "{error}"
    );
    untouched("an altered link").await;

    // A partial export (its streams' first events missing) cannot be imported alone.
    let partial = export_tail(&file, 1);
    let error = import(&target, &partial, &options()).await.unwrap_err();
    assert!(
        matches!(error, TransferError::Refused { first_line: 1, .. }),
        "{error}"
    );
    let chain = format!("{:#}", anyhow::Error::from(error));
    assert!(chain.contains("has no predecessor to chain to"), "{chain}");
    untouched("a partial export").await;

    // Data keys go only into a store that has none.
    let keys = b"{\"owner\":\"user:old\",\"key_id\":\"dk-old\",\"wrapped_key\":null,\"wrap_nonce\":null,\"master_key_id\":null,\"created_at\":\"2025-01-01T00:00:00Z\",\"destroyed_at\":\"2025-02-01T00:00:00Z\"}\n";
    let mut with_keys = options();
    with_keys.data_keys = Some(DataKeys::read(&keys[..]).await.expect("reading keys"));
    let client = target.connect().await.expect("connecting");
    client
        .batch_execute(
            "INSERT INTO owner_data_keys (owner, key_id, destroyed_at) \
             VALUES ('user:here', 'dk-here', now())",
        )
        .await
        .expect("a data key");
    let error = import(&target, &file, &with_keys).await.unwrap_err();
    assert!(
        matches!(error, TransferError::KeysNotEmpty { keys: 1 }),
        "{error}"
    );
    untouched("data keys into a store that has some").await;
    client
        .batch_execute("DELETE FROM owner_data_keys")
        .await
        .expect("removing it");
    let bad_keys = DataKeys::read(&b"{\"owner\":\"user:old\"}\n"[..]).await;
    assert!(
        matches!(bad_keys, Err(TransferError::InvalidKeyLine { line: 1, .. })),
        "{bad_keys:?}"
    );

    // A store with events refuses, and keeps what it had.
    import(&target, &file, &options()).await.expect("importing");
    let before = rows(&target, EVENT_ROWS).await;
    let error = import(&target, &file, &options()).await.unwrap_err();
    assert!(
        matches!(error, TransferError::NotEmpty { events: 4, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("not empty"), "{error}");
    assert_eq!(rows(&target, EVENT_ROWS).await, before);
    verified(&target).await;
}

/// The lines of `file` after the first `skip`.
fn export_tail(file: &[u8], skip: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(file);
    let lines: Vec<&str> = text.lines().skip(skip).collect();
    (lines.join("\n") + "\n").into_bytes()
}
