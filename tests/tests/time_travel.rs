//! Time travel and history through the real HTTP stack: a server driven through many
//! changes (config, secrets, restart policy, lifecycle requests, the process manager's
//! outcomes, deletion) reads back, at every position and at every event's time, exactly
//! as `GET /servers/{id}` showed it then; before its creation and after its deletion it
//! is 404; its history lists every event with its actor and a field-by-field diff in
//! which secrets are masked; other users see none of it.

mod api_support;

use std::sync::Arc;

use api_support::TestApp;
use berth_application::{Actor, CommandBus, CommandMetadata};
use berth_domain::server::{ServerCommand, Tool};
use berth_infrastructure::cipher::{MasterKey, MasterKeyCipher};
use berth_infrastructure::db::Database;
use berth_infrastructure::envelope::EnvelopeCipher;
use berth_infrastructure::event_store::PostgresEventRepository;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use reqwest::Method;
use serde_json::{json, Value};

const FIRST_SECRET: &str = "tt-first-plaintext-secret";
const SECOND_SECRET: &str = "tt-second-plaintext-secret";

/// The process manager's side of the lifecycle, recorded through the command bus as
/// `system:process-manager` (the test app does not drive a runtime).
struct ProcessManager {
    bus: CommandBus<PostgresEventRepository>,
    pool: deadpool_postgres::Pool,
}

impl ProcessManager {
    fn new(app: &TestApp) -> Self {
        let pool = Database::from_url(&app.db.url())
            .and_then(|db| db.pool(2))
            .unwrap_or_else(|e| panic!("pool: {e}"));
        let cipher = EnvelopeCipher::new(pool.clone(), MasterKeyCipher::new(MasterKey::generate()));
        let bus = CommandBus::new(PostgresEventRepository::new(pool.clone()), Arc::new(cipher));
        Self { bus, pool }
    }

    async fn record(&self, id: &str, command: ServerCommand) -> i64 {
        let metadata = CommandMetadata::new(Actor::System("process-manager".into()));
        self.bus
            .server(id.parse().expect("a server id"), command, &metadata)
            .await
            .unwrap_or_else(|e| panic!("recording an outcome: {e}"))
            .position
            .expect("the outcome wrote events")
    }
}

/// One state the server was in, as `GET /servers/{id}` answered right after it.
struct Seen {
    what: &'static str,
    position: i64,
    view: Value,
}

async fn current(app: &TestApp, id: &str, position: i64) -> Value {
    app.feed_settled().await;
    let answer = app
        .get(&format!("/api/v1/servers/{id}?min_position={position}"))
        .await;
    answer.expect(200);
    let view = answer.json();
    assert_eq!(view["position"], position, "{view}");
    view
}

async fn seen_at(app: &TestApp, id: &str, what: &'static str, position: i64) -> Seen {
    Seen {
        what,
        position,
        view: current(app, id, position).await,
    }
}

async fn patch(app: &TestApp, path: &str, body: Value) -> i64 {
    app.json(Method::PATCH, path, &body)
        .await
        .expect(202)
        .position()
}

async fn command(app: &TestApp, path: &str, action: &str) -> i64 {
    app.command(&format!("{path}/{action}"))
        .await
        .expect(202)
        .position()
}

async fn event_time(app: &TestApp, position: i64) -> DateTime<Utc> {
    let event = app.get(&format!("/api/v1/events/{position}")).await;
    event.expect(200);
    let event = event.json();
    assert_eq!(event["position"], position);
    event["recorded_at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("no recorded_at in {event}"))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[tokio::test]
async fn past_states_and_history_are_rebuilt_from_the_events() {
    let app = TestApp::spawn().await;
    let pm = ProcessManager::new(&app);
    let entry = app.register_fixture("time-travel").await.expect(201).id();
    let mut seen: Vec<Seen> = Vec::new();

    let created = app
        .post(
            "/api/v1/servers",
            &json!({
                "catalog_id": entry,
                "name": "traveller",
                "config": {"API_URL": "https://one.example.test"},
                "secrets": {"API_TOKEN": FIRST_SECRET}
            }),
        )
        .await;
    created.expect(201);
    let id = created.id();
    let path = format!("/api/v1/servers/{id}");
    let position = created.position();
    seen.push(seen_at(&app, &id, "created", position).await);

    let p = patch(&app, &path, json!({"config": {"MODE": "slow"}})).await;
    seen.push(seen_at(&app, &id, "config set", p).await);
    let p = patch(
        &app,
        &path,
        json!({"secrets": {"API_TOKEN": SECOND_SECRET}}),
    )
    .await;
    seen.push(seen_at(&app, &id, "secret changed", p).await);
    let p = patch(
        &app,
        &path,
        json!({"restart_policy": {"type": "on_failure", "max_retries": 3}}),
    )
    .await;
    seen.push(seen_at(&app, &id, "restart policy", p).await);
    let p = command(&app, &path, "start").await;
    seen.push(seen_at(&app, &id, "start requested", p).await);
    let p = pm.record(&id, ServerCommand::BeginProvisioning).await;
    seen.push(seen_at(&app, &id, "provisioning", p).await);
    let p = pm
        .record(
            &id,
            ServerCommand::RecordContainerCreated {
                container_id: "c-traveller-1".into(),
                node: "n1".into(),
            },
        )
        .await;
    seen.push(seen_at(&app, &id, "container created", p).await);
    let p = pm
        .record(
            &id,
            ServerCommand::RecordRunning {
                tools: vec![Tool {
                    name: "echo".into(),
                    description: Some("says it back".into()),
                    input_schema: Some(serde_json::json!({"type": "object", "properties": {"text": {"type": "string"}}})),
                }],
                endpoint: None,
            },
        )
        .await;
    seen.push(seen_at(&app, &id, "running", p).await);
    let p = command(&app, &path, "stop").await;
    seen.push(seen_at(&app, &id, "stop requested", p).await);
    let p = pm.record(&id, ServerCommand::RecordStopped).await;
    seen.push(seen_at(&app, &id, "stopped", p).await);
    let p = command(&app, &path, "disable").await;
    seen.push(seen_at(&app, &id, "disabled", p).await);
    let p = command(&app, &path, "enable").await;
    seen.push(seen_at(&app, &id, "enabled", p).await);
    let p = command(&app, &path, "start").await;
    seen.push(seen_at(&app, &id, "started again", p).await);
    let p = pm
        .record(
            &id,
            ServerCommand::RecordFailed {
                reason: "it did not answer".into(),
            },
        )
        .await;
    seen.push(seen_at(&app, &id, "failed", p).await);
    let p = patch(
        &app,
        &path,
        json!({"config": {"API_URL": "https://two.example.test", "MODE": null}}),
    )
    .await;
    seen.push(seen_at(&app, &id, "config changed and removed", p).await);
    let deleted = app
        .send(Method::DELETE, &path, None, None, &[])
        .await
        .expect(202)
        .position();
    app.feed_settled().await;
    app.get(&format!("{path}?min_position={deleted}"))
        .await
        .expect_problem(404);

    // The states are all different: each one is a real test of the replay.
    for pair in seen.windows(2) {
        assert_ne!(
            pair[0].view, pair[1].view,
            "{} changed nothing",
            pair[1].what
        );
    }
    assert_eq!(seen[0].view["secrets"]["API_TOKEN"], "********");
    assert_eq!(seen[7].view["state"], "running");
    assert_eq!(seen[7].view["health"], "healthy");
    assert_eq!(seen[14].view["last_error"], "it did not answer");

    // Every past state, by position and by time, exactly as it was served then.
    for s in &seen {
        let at_position = app.get(&format!("{path}?at={}", s.position)).await;
        at_position.expect(200);
        assert_eq!(
            at_position.json(),
            s.view,
            "at position {} ({})",
            s.position,
            s.what
        );
        let time = event_time(&app, s.position).await;
        let at_time = app.get(&format!("{path}?at={}", rfc3339(time))).await;
        at_time.expect(200);
        assert_eq!(at_time.json(), s.view, "at {} ({})", rfc3339(time), s.what);
    }
    // Before its creation and after its deletion there is no such server.
    let born = event_time(&app, seen[0].position).await;
    for at in [
        (seen[0].position - 1).to_string(),
        "0".to_string(),
        rfc3339(born - Duration::microseconds(1)),
        deleted.to_string(),
        (deleted + 1000).to_string(),
        rfc3339(Utc::now()),
    ] {
        let answer = app.get(&format!("{path}?at={at}")).await;
        answer.expect_problem(404);
    }
    // Malformed points name `at`.
    for at in ["garbage", "-3", "2026-13-45T99:99:99Z", "1.5"] {
        let answer = app.get(&format!("{path}?at={at}")).await;
        answer.expect_problem(422);
        assert_eq!(answer.problem_fields(), ["at"], "{answer}");
    }
    // A `+` offset works when encoded, and when it reached the query as a space.
    let offset = chrono::FixedOffset::east_opt(3600).expect("an offset");
    let plus = event_time(&app, seen[1].position)
        .await
        .with_timezone(&offset)
        .to_rfc3339_opts(SecondsFormat::Micros, false);
    for sent in [plus.replace('+', "%2B"), plus.clone()] {
        let answer = app.get(&format!("{path}?at={sent}")).await;
        answer.expect(200);
        assert_eq!(answer.json(), seen[1].view, "at {sent}");
    }

    // The history: one entry per event, oldest first, with actor, time and changes.
    let events = app.get(&format!("{path}/events?limit=1000")).await.json();
    let events = events["events"].as_array().cloned().unwrap_or_default();
    let history = app.get(&format!("{path}/history?page_size=500")).await;
    history.expect(200);
    let body = String::from_utf8_lossy(&history.body).to_string();
    let history = history.json();
    let items = history["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(history["total"], events.len(), "{history}");
    assert_eq!(items.len(), events.len());
    for (i, (item, event)) in items.iter().zip(&events).enumerate() {
        assert_eq!(item["position"], event["position"]);
        assert_eq!(item["sequence"], i + 1);
        assert_eq!(item["event_type"], event["event_type"]);
        assert_eq!(item["at"], event["recorded_at"]);
        assert_eq!(item["actor"], event["metadata"]["actor"]);
        assert!(item["action"]
            .as_str()
            .is_some_and(|a| a.starts_with("server.")));
        assert_eq!(
            item["event"],
            format!("/api/v1/events/{}", event["position"])
        );
    }
    let changes_at = |position: i64| -> Vec<(String, Value, Value)> {
        let item = items
            .iter()
            .find(|i| i["position"] == position)
            .unwrap_or_else(|| panic!("no history entry at {position}"));
        item["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["field"].as_str().unwrap_or_default().to_string(),
                    c["from"].clone(),
                    c["to"].clone(),
                )
            })
            .collect()
    };
    let change = |field: &str, from: Value, to: Value| (field.to_string(), from, to);
    let creation = changes_at(seen[0].position);
    for expected in [
        change("name", Value::Null, json!("traveller")),
        change("state", Value::Null, json!("stopped")),
        change("enabled", Value::Null, json!(true)),
        change(
            "config.API_URL",
            Value::Null,
            json!("https://one.example.test"),
        ),
        change("secrets.API_TOKEN", Value::Null, json!("********")),
    ] {
        assert!(creation.contains(&expected), "{expected:?} in {creation:?}");
    }
    assert_eq!(
        changes_at(seen[1].position),
        [change("config.MODE", Value::Null, json!("slow"))]
    );
    assert_eq!(
        changes_at(seen[2].position),
        [change(
            "secrets.API_TOKEN",
            json!("********"),
            json!("********")
        )]
    );
    assert_eq!(
        changes_at(seen[3].position),
        [change(
            "restart_policy",
            json!({"type": "never"}),
            json!({"type": "on_failure", "max_retries": 3})
        )]
    );
    assert_eq!(
        changes_at(seen[4].position),
        [change("state", json!("stopped"), json!("pending"))]
    );
    assert!(changes_at(seen[6].position).contains(&change(
        "container_id",
        Value::Null,
        json!("c-traveller-1")
    )));
    let all: Vec<(String, Value, Value)> = items
        .iter()
        .filter_map(|i| i["position"].as_i64())
        .flat_map(changes_at)
        .collect();
    for expected in [
        change("state", json!("starting"), json!("running")),
        change("health", json!("unknown"), json!("healthy")),
        change(
            "tools",
            json!([]),
            json!([{"name": "echo", "description": "says it back",
                     "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}}}]),
        ),
        change("state", json!("running"), json!("stopping")),
        change("container_id", json!("c-traveller-1"), Value::Null),
    ] {
        assert!(all.contains(&expected), "{expected:?} in {all:?}");
    }
    assert!(changes_at(seen[10].position).contains(&change("enabled", json!(true), json!(false))));
    assert!(changes_at(seen[13].position).contains(&change(
        "last_error",
        Value::Null,
        json!("it did not answer")
    )));
    assert_eq!(
        changes_at(seen[14].position),
        [
            change(
                "config.API_URL",
                json!("https://one.example.test"),
                json!("https://two.example.test")
            ),
            change("config.MODE", json!("slow"), Value::Null),
        ]
    );
    assert_eq!(
        changes_at(deleted),
        [change("deleted", json!(false), json!(true))]
    );
    let actors: Vec<&str> = items.iter().filter_map(|i| i["actor"].as_str()).collect();
    assert!(actors.contains(&"user:admin") && actors.contains(&"system:process-manager"));

    // No secret in any form: neither plaintext nor any sealed value of the events.
    assert!(!body.contains(FIRST_SECRET) && !body.contains(SECOND_SECRET));
    let sealed: std::collections::BTreeSet<String> = events
        .iter()
        .filter_map(|e| e["payload"]["secrets"].as_object())
        .flat_map(|secrets| secrets.values())
        .filter_map(|s| s["ciphertext"].as_str().map(str::to_string))
        .collect();
    assert_eq!(sealed.len(), 2, "the first secret and the second");
    for ciphertext in &sealed {
        assert!(!body.contains(ciphertext.as_str()));
        for s in &seen {
            assert!(!s.view.to_string().contains(ciphertext.as_str()));
        }
    }

    // Pages of the history are slices of the whole.
    let page = app
        .get(&format!("{path}/history?page=2&page_size=4"))
        .await
        .json();
    assert_eq!(
        page["items"].as_array().map(Vec::as_slice),
        Some(&items[4..8])
    );
    assert_eq!(page["total"], items.len());
    app.get(&format!("{path}/history?page_size=501"))
        .await
        .expect_problem(422);
    app.get(&format!("/api/v1/servers/{}/history", uuid::Uuid::new_v4()))
        .await
        .expect_problem(404);

    // The audit log links each entry to its event.
    let audit = app
        .get(&format!(
            "/api/v1/audit?server_id={id}&min_position={deleted}"
        ))
        .await
        .json();
    let first = &audit["items"][0];
    assert_eq!(first["position"], deleted);
    assert_eq!(first["event"], format!("/api/v1/events/{deleted}"));
    let linked = app.get(&format!("/api/v1/events/{deleted}")).await.json();
    assert_eq!(linked["event_type"], "ServerDeleted");
    app.get("/api/v1/events/not-a-number")
        .await
        .expect_problem(400);
    app.get(&format!("/api/v1/events/{}", deleted + 10_000))
        .await
        .expect_problem(404);

    pm.pool.close();
    app.stop().await;
}

#[tokio::test]
async fn other_users_never_see_a_past_they_do_not_own() {
    let app = TestApp::spawn().await;
    let entry = app.register_fixture("private-past").await.expect(201).id();
    app.command(&format!("/api/v1/catalog/{entry}/publish"))
        .await
        .expect(202);
    let mut keys = Vec::new();
    for name in ["ann", "bob"] {
        let user = app
            .post("/api/v1/users", &json!({"name": name, "role": "operator"}))
            .await
            .expect(201)
            .id();
        let key = app
            .post(&format!("/api/v1/users/{user}/keys"), &json!({"name": "k"}))
            .await
            .expect(201)
            .json()["key"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        keys.push(key);
    }
    let (ann, bob) = (keys[0].as_str(), keys[1].as_str());
    let body = serde_json::to_vec(&json!({
        "catalog_id": entry,
        "name": "anns",
        "config": {"API_URL": "https://ann.example.test"},
        "secrets": {"API_TOKEN": "ann-token"}
    }))
    .unwrap_or_default();
    let created = app
        .send(Method::POST, "/api/v1/servers", Some(body), Some(ann), &[])
        .await;
    created.expect(201);
    let (id, position) = (created.id(), created.position());
    app.feed_settled().await;

    let as_of = format!("/api/v1/servers/{id}?at={position}");
    let history = format!("/api/v1/servers/{id}/history");
    let event = format!("/api/v1/events/{position}");
    for path in [&as_of, &history, &event] {
        app.send(Method::GET, path, None, Some(ann), &[])
            .await
            .expect(200);
        app.send(Method::GET, path, None, None, &[])
            .await
            .expect(200);
        let hidden = app.send(Method::GET, path, None, Some(bob), &[]).await;
        hidden.expect_problem(404);
        assert!(!String::from_utf8_lossy(&hidden.body).contains("anns"));
    }
    // Malformed `at` is refused before anything is looked up, for anyone.
    app.send(
        Method::GET,
        &format!("/api/v1/servers/{id}?at=soon"),
        None,
        Some(bob),
        &[],
    )
    .await
    .expect_problem(422);
    app.stop().await;
}
