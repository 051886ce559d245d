//! Bulk operations end to end over real HTTP and PostgreSQL: per-target outcomes and the
//! overall state, the bulk id as every per-server event's correlation id, progress while
//! it runs, idempotency keys, bad input that writes nothing, and the driver run twice at
//! once or again after it finished without recording anything twice.

mod api_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_support::{server_body, uuid, Answer, TestApp};
use berth_application::bulk::{BulkDriver, BulkDriverOptions};
use berth_application::servers::{LifecycleAction, NewServer};
use berth_application::{Actor, CommandBus, CommandMetadata};
use berth_domain::bulk::{BulkAction, BulkState};
use berth_domain::catalog::{CatalogDefinition, Resources, RuntimeSpec, Transport};
use berth_infrastructure::cipher::{MasterKey, MasterKeyCipher};
use berth_infrastructure::event_store::PostgresEventRepository;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

/// Registers a fixture entry and creates `n` servers of it (stopped, enabled).
async fn servers(app: &TestApp, prefix: &str, n: usize) -> Vec<String> {
    let catalog_id = app
        .register_fixture(&format!("{prefix}-entry"))
        .await
        .expect(201)
        .id();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let body = server_body(&catalog_id, &format!("{prefix}-{i}"), "t");
        ids.push(app.post("/api/v1/servers", &body).await.expect(201).id());
    }
    ids
}

/// `POST /api/v1/bulk`, with an `Idempotency-Key` when given.
async fn bulk(app: &TestApp, operation: &str, ids: &[String], key: Option<&str>) -> Answer {
    let body = json!({"operation": operation, "server_ids": ids});
    let bytes = serde_json::to_vec(&body).expect("serialising");
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    app.send(Method::POST, "/api/v1/bulk", Some(bytes), None, &headers)
        .await
}

/// `POST /api/v1/bulk` with a raw body.
async fn post_raw(app: &TestApp, body: &str, key: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    app.send(
        Method::POST,
        "/api/v1/bulk",
        Some(body.as_bytes().to_vec()),
        None,
        &headers,
    )
    .await
}

/// Every state of the operation read until it is no longer `running`, in order. Each
/// read must be consistent in itself, and progress never goes back.
async fn follow(app: &TestApp, id: &str, position: i64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen: Vec<Value> = Vec::new();
    loop {
        let answer = app
            .get(&format!("/api/v1/bulk/{id}?min_position={position}"))
            .await;
        answer.expect(200);
        let view = answer.json();
        let (total, succeeded, failed, pending) = (
            view["total"].as_u64().unwrap_or_default(),
            view["succeeded"].as_u64().unwrap_or_default(),
            view["failed"].as_u64().unwrap_or_default(),
            view["pending"].as_u64().unwrap_or_default(),
        );
        assert_eq!(succeeded + failed + pending, total, "{view}");
        let results = view["results"].as_array().cloned().unwrap_or_default();
        assert_eq!(results.len() as u64, total, "{view}");
        let count = |o: &str| results.iter().filter(|r| r["outcome"] == o).count() as u64;
        assert_eq!(
            (count("succeeded"), count("failed"), count("pending")),
            (succeeded, failed, pending),
            "{view}"
        );
        if let Some(last) = seen.last() {
            let done = |v: &Value| {
                v["succeeded"].as_u64().unwrap_or_default()
                    + v["failed"].as_u64().unwrap_or_default()
            };
            assert!(
                done(&view) >= done(last),
                "progress went back: {last} then {view}"
            );
        }
        let running = view["state"] == "running";
        assert_eq!(running, pending > 0, "{view}");
        seen.push(view);
        if !running {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "the bulk operation never finished"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The events of one aggregate, through the API.
async fn events_of(app: &TestApp, aggregate_id: &str) -> Vec<Value> {
    app.feed_settled().await;
    let answer = app
        .get(&format!(
            "/api/v1/events?aggregate_id={aggregate_id}&limit=1000"
        ))
        .await;
    answer.expect(200);
    answer.json()["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn outcome(view: &Value, server_id: &str) -> (String, Option<String>) {
    let result = view["results"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["server_id"] == server_id).cloned())
        .unwrap_or_else(|| panic!("{server_id} is not in {view}"));
    (
        result["outcome"].as_str().unwrap_or_default().to_string(),
        result["error"].as_str().map(str::to_string),
    )
}

#[tokio::test]
async fn a_mixed_start_records_each_targets_outcome_and_ends_partially_failed() {
    let app = TestApp::spawn().await;
    let ids = servers(&app, "mixed", 18).await;
    let (fresh, rest) = ids.split_at(12);
    let (running, rest) = rest.split_at(2);
    let (disabled, rest) = rest.split_at(2);
    let (being_deleted, deleted) = rest.split_at(1);
    for id in running.iter().chain(being_deleted) {
        app.command(&format!("/api/v1/servers/{id}/start"))
            .await
            .expect(202);
    }
    for id in disabled {
        app.command(&format!("/api/v1/servers/{id}/disable"))
            .await
            .expect(202);
    }
    // Pending (no runtime here), so deleting it waits for a stop that never comes.
    app.send(
        Method::DELETE,
        &format!("/api/v1/servers/{}", being_deleted[0]),
        None,
        None,
        &[],
    )
    .await
    .expect(202);
    app.send(
        Method::DELETE,
        &format!("/api/v1/servers/{}", deleted[0]),
        None,
        None,
        &[],
    )
    .await
    .expect(202);
    let unknown = [uuid(), uuid()];

    // 20 distinct targets; the repeated one counts once.
    let mut targets: Vec<String> = Vec::new();
    targets.extend_from_slice(fresh);
    targets.push(unknown[0].clone());
    targets.extend_from_slice(running);
    targets.extend_from_slice(disabled);
    targets.push(fresh[0].clone());
    targets.extend_from_slice(being_deleted);
    targets.extend_from_slice(deleted);
    targets.push(unknown[1].clone());
    let answer = bulk(&app, "start", &targets, None).await;
    answer.expect(202);
    let (bulk_id, position) = (answer.id(), answer.position());
    assert_eq!(answer.header("berth-position"), Some(position.to_string()));

    let seen = follow(&app, &bulk_id, position).await;
    let done = seen.last().cloned().unwrap_or_default();
    eprintln!("{} reads while it ran", seen.len());
    assert_eq!(done["id"], bulk_id.as_str());
    assert_eq!(done["operation"], "start");
    assert_eq!(done["state"], "partially_failed", "{done}");
    assert_eq!(done["requested_by"], "user:admin");
    assert_eq!(
        (&done["total"], &done["succeeded"], &done["failed"]),
        (&json!(20), &json!(14), &json!(6)),
        "{done}"
    );
    // The results keep the order asked, each server once.
    let listed: Vec<&str> = done["results"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["server_id"].as_str()).collect())
        .unwrap_or_default();
    let mut expected: Vec<&str> = targets.iter().map(String::as_str).collect();
    expected.remove(
        expected
            .iter()
            .rposition(|t| *t == fresh[0])
            .unwrap_or_default(),
    );
    assert_eq!(listed, expected);

    let succeeded = ("succeeded".to_string(), None);
    for id in fresh.iter().chain(running) {
        assert_eq!(outcome(&done, id), succeeded, "{id}");
    }
    let failed = |error: &str| ("failed".to_string(), Some(error.to_string()));
    for id in unknown.iter().chain(deleted) {
        assert_eq!(outcome(&done, id), failed("server not found"));
    }
    for id in disabled {
        assert_eq!(
            outcome(&done, id),
            failed("cannot start a server that is disabled; enable it first")
        );
    }
    assert_eq!(
        outcome(&done, &being_deleted[0]),
        failed("cannot start a server that is being deleted")
    );

    // The per-server events carry the bulk id as correlation id, act for the caller, and
    // name the `Began` event as their cause.
    let bulk_events = events_of(&app, &bulk_id).await;
    let began: Vec<&Value> = bulk_events
        .iter()
        .filter(|e| e["event_type"] == "BulkOperationBegan")
        .collect();
    assert_eq!(began.len(), 1);
    let began_id = began[0]["event_id"].as_str().unwrap_or_default();
    assert_eq!(began[0]["metadata"]["correlation_id"], bulk_id.as_str());
    let count = |t: &str| bulk_events.iter().filter(|e| e["event_type"] == t).count();
    assert_eq!(count("BulkOperationTargetSucceeded"), 14);
    assert_eq!(count("BulkOperationTargetFailed"), 6);
    assert_eq!(count("BulkOperationCompleted"), 1);
    for e in bulk_events.iter().skip(1) {
        assert_eq!(e["metadata"]["correlation_id"], bulk_id.as_str(), "{e}");
        assert_eq!(e["metadata"]["causation_id"], began_id, "{e}");
        assert_eq!(e["metadata"]["actor"], "system:bulk-operations", "{e}");
    }
    for id in fresh {
        let starts: Vec<Value> = events_of(&app, id)
            .await
            .into_iter()
            .filter(|e| e["event_type"] == "ServerStartRequested")
            .collect();
        assert_eq!(starts.len(), 1, "{id} was started once, though named twice");
        let meta = &starts[0]["metadata"];
        assert_eq!(meta["correlation_id"], bulk_id.as_str(), "{meta}");
        assert_eq!(meta["causation_id"], began_id, "{meta}");
        assert_eq!(meta["actor"], "user:admin", "{meta}");
        let server = app
            .get(&format!("/api/v1/servers/{id}?min_position={position}"))
            .await
            .json();
        assert!(
            server["state"] == "pending" || server["state"] == "stopped",
            "{server}"
        );
    }
    // Servers already starting got no second request.
    for id in running {
        let starts = events_of(&app, id)
            .await
            .into_iter()
            .filter(|e| e["event_type"] == "ServerStartRequested")
            .count();
        assert_eq!(starts, 1);
    }

    // The audit trail shows the operation and each target's outcome under its id.
    let last = done["position"].as_i64().unwrap_or_default();
    let audit = app
        .get(&format!(
            "/api/v1/audit?correlation_id={bulk_id}&page_size=500&min_position={last}"
        ))
        .await;
    audit.expect(200);
    let items = audit.json()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        items.len(),
        1 + 20 + 1 + 12,
        "began, outcomes, completion, starts: {items:?}"
    );
    let summaries: Vec<&str> = items.iter().filter_map(|i| i["summary"].as_str()).collect();
    let short = &bulk_id[..8];
    assert!(
        summaries.contains(&format!("began bulk start {short}… of 20 servers").as_str()),
        "{summaries:?}"
    );
    assert!(
        summaries.contains(
            &format!("bulk start {short}… partially failed: 14 succeeded, 6 failed").as_str()
        ),
        "{summaries:?}"
    );
    assert!(summaries.contains(&format!("bulk start {short}…: server \"mixed-14\" failed: cannot start a server that is disabled; enable it first").as_str()), "{summaries:?}");
    assert!(
        summaries.contains(&format!("bulk start {short}…: server \"mixed-0\" succeeded").as_str()),
        "{summaries:?}"
    );
    for item in &items {
        assert_eq!(item["correlation_id"], bulk_id.as_str(), "{item}");
    }
}

#[tokio::test]
async fn all_valid_completes_and_all_invalid_fails() {
    let app = TestApp::spawn().await;
    let ids = servers(&app, "all", 7).await;
    let (valid, invalid) = ids.split_at(5);

    let answer = bulk(&app, "disable", valid, None).await;
    answer.expect(202);
    let done = follow(&app, &answer.id(), answer.position()).await;
    let done = done.last().cloned().unwrap_or_default();
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(
        (&done["succeeded"], &done["failed"]),
        (&json!(5), &json!(0))
    );
    assert!(done["completed_at"].is_string(), "{done}");
    for id in valid {
        let server = app
            .get(&format!(
                "/api/v1/servers/{id}?min_position={}",
                done["position"]
            ))
            .await
            .json();
        assert_eq!(server["enabled"], false, "{server}");
    }

    // Disabling them again: already where the action leads, so it still succeeds.
    let again = bulk(&app, "disable", valid, None).await;
    again.expect(202);
    let done = follow(&app, &again.id(), again.position()).await;
    assert_eq!(
        done.last().map(|d| d["state"].clone()),
        Some(json!("completed"))
    );

    // Starting disabled servers, deleted ones and unknown ones: nothing succeeds.
    for id in invalid {
        app.send(
            Method::DELETE,
            &format!("/api/v1/servers/{id}"),
            None,
            None,
            &[],
        )
        .await
        .expect(202);
    }
    let mut targets: Vec<String> = valid.to_vec();
    targets.extend_from_slice(invalid);
    targets.push(uuid());
    let answer = bulk(&app, "start", &targets, None).await;
    answer.expect(202);
    let done = follow(&app, &answer.id(), answer.position()).await;
    let done = done.last().cloned().unwrap_or_default();
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(
        (&done["total"], &done["succeeded"], &done["failed"]),
        (&json!(8), &json!(0), &json!(8))
    );
}

#[tokio::test]
async fn progress_is_visible_while_a_bulk_operation_runs() {
    let app = TestApp::spawn_with(|config| config.bulk.concurrency = 1).await;
    let targets: Vec<String> = (0..200).map(|_| uuid()).collect();
    let answer = bulk(&app, "stop", &targets, None).await;
    answer.expect(202);
    let seen = follow(&app, &answer.id(), answer.position()).await;
    let partial = seen.iter().any(|v| {
        let done =
            v["succeeded"].as_u64().unwrap_or_default() + v["failed"].as_u64().unwrap_or_default();
        v["state"] == "running" && done > 0 && done < 200
    });
    assert!(partial, "no read showed it part-way ({} reads)", seen.len());
    let done = seen.last().cloned().unwrap_or_default();
    assert_eq!(done["state"], "failed");
    assert_eq!(done["failed"], 200);
}

#[tokio::test]
async fn an_operation_interrupted_by_a_stop_is_finished_after_a_restart() {
    let mut app = TestApp::spawn_with(|config| config.bulk.concurrency = 1).await;
    let targets: Vec<String> = (0..300).map(|_| uuid()).collect();
    let answer = bulk(&app, "delete", &targets, None).await;
    answer.expect(202);
    let (id, position) = (answer.id(), answer.position());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = app
            .get(&format!("/api/v1/bulk/{id}?min_position={position}"))
            .await
            .json();
        if view["failed"].as_u64().unwrap_or_default() > 0 {
            assert_eq!(view["state"], "running", "finished before the stop: {view}");
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {view}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    app.restart().await;
    let done = follow(&app, &id, position).await;
    let done = done.last().cloned().unwrap_or_default();
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["failed"], 300);
    let events = events_of(&app, &id).await;
    let count = |t: &str| events.iter().filter(|e| e["event_type"] == t).count();
    assert_eq!(count("BulkOperationTargetFailed"), 300);
    assert_eq!(count("BulkOperationCompleted"), 1);
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retried_request_begin_one_operation() {
    let app = TestApp::spawn().await;
    let ids = servers(&app, "idem", 3).await;
    let began_count = |id: String| {
        let app = &app;
        async move {
            let row = app
                .sql()
                .await
                .query_one(
                    "SELECT count(*) FROM events WHERE aggregate_type = 'bulk_operation' \
                     AND aggregate_id = $1 AND event_type = 'BulkOperationBegan'",
                    &[&id],
                )
                .await
                .expect("counting");
            row.get::<_, i64>(0)
        }
    };

    let first = bulk(&app, "start", &ids, Some("retry-me-1")).await;
    first.expect(202);
    let id = first.id();
    follow(&app, &id, first.position()).await;
    let head = app.head().await;

    // The same request again, after it finished: the same operation, nothing written.
    let second = bulk(&app, "start", &ids, Some("retry-me-1")).await;
    second.expect(202);
    assert_eq!(second.id(), id);
    assert_eq!(second.position(), head);
    assert_eq!(second.header("berth-position"), Some(head.to_string()));
    assert_eq!(app.head().await, head);
    assert_eq!(began_count(id.clone()).await, 1);
    // Repeats in the list do not make it another request.
    let mut repeated = ids.clone();
    repeated.push(ids[0].clone());
    bulk(&app, "start", &repeated, Some("retry-me-1"))
        .await
        .expect(202);
    assert_eq!(app.head().await, head);

    // The same key for another request is refused and writes nothing.
    for (operation, targets) in [("stop", ids.clone()), ("start", ids[..2].to_vec())] {
        let other = bulk(&app, operation, &targets, Some("retry-me-1")).await;
        other.expect_problem(422);
        assert_eq!(other.problem_fields(), ["Idempotency-Key"], "{other}");
        assert!(
            other.json()["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("already used for a different"),
            "{other}"
        );
        assert_eq!(app.head().await, head);
    }
    assert_eq!(began_count(id.clone()).await, 1);

    // Two requests racing with one key still begin one operation.
    let (a, b) = tokio::join!(
        bulk(&app, "stop", &ids, Some("raced")),
        bulk(&app, "stop", &ids, Some("raced"))
    );
    a.expect(202);
    b.expect(202);
    assert_eq!(a.id(), b.id());
    assert_eq!(began_count(a.id()).await, 1);

    // Another key, or none, is another operation each time.
    let other_key = bulk(&app, "start", &ids, Some("retry-me-2")).await;
    other_key.expect(202);
    assert_ne!(other_key.id(), id);
    let x = bulk(&app, "start", &ids, None).await;
    let y = bulk(&app, "start", &ids, None).await;
    x.expect(202);
    y.expect(202);
    assert_ne!(x.id(), y.id());
    assert_eq!(began_count(x.id()).await, 1);
    assert_eq!(began_count(y.id()).await, 1);
    for answer in [&a, &other_key, &x, &y] {
        follow(&app, &answer.id(), answer.position()).await;
    }
}

#[tokio::test]
async fn bad_bulk_requests_are_refused_and_write_nothing() {
    let app = TestApp::spawn().await;
    let ids = servers(&app, "bad", 1).await;
    let head = app.head().await;
    let refused = |answer: Answer, status: u16, fields: &[&str]| {
        answer.expect_problem(status);
        assert_eq!(answer.problem_fields(), fields, "{answer}");
    };

    refused(bulk(&app, "start", &[], None).await, 422, &["server_ids"]);
    let many: Vec<String> = (0..1001).map(|_| uuid()).collect();
    let answer = bulk(&app, "start", &many, None).await;
    assert!(
        answer.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 1000"),
        "{answer}"
    );
    refused(answer, 422, &["server_ids"]);
    refused(bulk(&app, "reboot", &ids, None).await, 400, &["operation"]);
    let id = &ids[0];
    let body = format!(r#"{{"operation":"start","server_ids":["{id}"],"colour":"blue"}}"#);
    refused(post_raw(&app, &body, None).await, 400, &["colour"]);
    let body = format!(r#"{{"operation":"start","server_ids":["{id}","not-a-uuid"]}}"#);
    refused(post_raw(&app, &body, None).await, 400, &["server_ids[1]"]);
    refused(
        post_raw(&app, r#"{"server_ids":[]}"#, None).await,
        422,
        &["operation"],
    );
    let body = r#"{"operation":"start","server_ids":"all"}"#;
    refused(post_raw(&app, body, None).await, 400, &["server_ids"]);
    refused(
        post_raw(&app, r#"{"operation":"start","#, None).await,
        400,
        &[],
    );
    let valid = format!(r#"{{"operation":"start","server_ids":["{id}"]}}"#);
    for key in [
        "has space".to_string(),
        "k".repeat(256),
        "naïve".to_string(),
    ] {
        let answer = post_raw(&app, &valid, Some(&key)).await;
        refused(answer, 400, &["Idempotency-Key"]);
    }
    assert_eq!(app.head().await, head, "a refused request wrote events");

    refused(app.get(&format!("/api/v1/bulk/{}", uuid())).await, 404, &[]);
    refused(app.get("/api/v1/bulk/not-a-uuid").await, 400, &["id"]);
    refused(
        app.get(&format!("/api/v1/bulk/{}?min_position=x", uuid()))
            .await,
        400,
        &["min_position"],
    );
    assert_eq!(app.head().await, head);
}

#[test]
fn the_target_concurrency_is_a_setting() {
    use std::io::Write;

    use berth_api::cli::config::{FlagOverrides, Settings};

    let defaults = Settings::load(None, &FlagOverrides::default()).expect("defaults");
    assert_eq!(defaults.serve_config().bulk.concurrency, 8);
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(b"bulk_concurrency = 3\n").expect("writing");
    let settings = Settings::load(Some(file.path()), &FlagOverrides::default()).expect("loading");
    assert_eq!(settings.serve_config().bulk.concurrency, 3);
}

/// The driver against the real store, without HTTP: two drivers (as on two replicas)
/// racing over one operation, a run after it completed, and a run after a crash between
/// a server's command and its recorded outcome.
#[tokio::test]
async fn the_driver_never_records_or_commands_anything_twice() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(16).expect("pool");
    let repo = PostgresEventRepository::new(pool.clone());
    let cipher = Arc::new(MasterKeyCipher::new(MasterKey::generate()));
    let bus = Arc::new(CommandBus::new(repo.clone(), cipher));
    let admin = CommandMetadata::new(Actor::admin());
    let (catalog_id, _) = bus
        .register_catalog_entry(
            &admin,
            CatalogDefinition {
                name: "driver-fixture".into(),
                description: String::new(),
                transport: Transport::Stdio,
                runtime: RuntimeSpec::Process {
                    command: "/bin/true".into(),
                    args: vec![],
                },
                config_schema: vec![],
                resources: Resources::default(),
                gateway: Default::default(),
            },
        )
        .await
        .expect("registering");
    let mut ids = Vec::new();
    for i in 0..10 {
        let new = NewServer {
            catalog_id,
            name: format!("driven-{i}"),
            config: BTreeMap::new(),
            secrets: BTreeMap::new(),
            restart_policy: Default::default(),
        };
        ids.push(
            bus.create_server(&admin, new)
                .await
                .expect("creating")
                .0
                .uuid(),
        );
    }
    let driver = || {
        BulkDriver::new(
            bus.clone(),
            repo.clone(),
            BulkDriverOptions { concurrency: 3 },
        )
    };
    let (one, two) = (driver(), driver());
    let count = |sql: &'static str, id: String| {
        let pool = pool.clone();
        async move {
            let client = pool.get().await.expect("connection");
            client
                .query_one(sql, &[&id])
                .await
                .expect("counting")
                .get::<_, i64>(0)
        }
    };
    const OUTCOMES: &str = "SELECT count(*) FROM events WHERE aggregate_id = $1 \
         AND event_type IN ('BulkOperationTargetSucceeded', 'BulkOperationTargetFailed')";
    const COMPLETIONS: &str = "SELECT count(*) FROM events WHERE aggregate_id = $1 \
         AND event_type = 'BulkOperationCompleted'";
    const STARTS: &str = "SELECT count(*) FROM events WHERE aggregate_id = $1 \
         AND event_type = 'ServerStartRequested'";
    const STOPS: &str = "SELECT count(*) FROM events WHERE aggregate_id = $1 \
         AND event_type = 'ServerStopRequested'";

    // Two drivers at once over one operation.
    let mut targets = ids.clone();
    targets.push(Uuid::now_v7());
    let (bulk_id, _) = bus
        .begin_bulk(&admin, BulkAction::Start, targets, None)
        .await
        .expect("beginning");
    let (a, b) = tokio::join!(one.run_bulk(bulk_id, None), two.run_bulk(bulk_id, None));
    a.expect("first driver");
    b.expect("second driver");
    assert_eq!(count(OUTCOMES, bulk_id.to_string()).await, 11);
    assert_eq!(count(COMPLETIONS, bulk_id.to_string()).await, 1);
    let bulk = bus.load_bulk(bulk_id.into()).await.expect("loading");
    assert_eq!(bulk.state, BulkState::PartiallyFailed);
    assert_eq!(
        bulk.counts(),
        (10, 1),
        "a lost race must not be recorded as a failure"
    );
    for id in &ids {
        assert_eq!(count(STARTS, id.to_string()).await, 1, "{id}");
    }

    // Again after it completed: nothing to do, nothing written.
    const HEAD: &str = "SELECT coalesce(max(global_position), 0) FROM events \
         WHERE aggregate_id <> $1";
    let head = count(HEAD, String::new()).await;
    let again = one.run_bulk(bulk_id, None).await.expect("running again");
    assert_eq!(
        (again.dispatched, again.state),
        (0, BulkState::PartiallyFailed)
    );
    assert_eq!(count(HEAD, String::new()).await, head);

    // A crash after three servers' commands were written but before their outcomes
    // were: the next run counts them as succeeded and commands only the rest.
    let (stop_id, _) = bus
        .begin_bulk(&admin, BulkAction::Stop, ids.clone(), Some("crash".into()))
        .await
        .expect("beginning");
    let mut md = CommandMetadata::new(Actor::admin());
    md.correlation_id = Some(stop_id);
    for id in &ids[..3] {
        bus.server_lifecycle(&md, (*id).into(), LifecycleAction::Stop)
            .await
            .expect("stopping");
    }
    let run = two.run_bulk(stop_id, None).await.expect("resuming");
    assert_eq!((run.dispatched, run.state), (10, BulkState::Completed));
    for id in &ids {
        assert_eq!(count(STOPS, id.to_string()).await, 1, "{id}");
    }
    assert_eq!(count(OUTCOMES, stop_id.to_string()).await, 10);
}
