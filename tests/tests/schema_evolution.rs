//! Schema evolution: events stored in an older shape keep loading. The fixture holds a
//! user and an API key exactly as an earlier release stored them (`ApiKeyCreated`
//! version 1, whose digest was a bare `hash` string); the upcaster chain lifts it to the
//! current shape for the projections, the audit trail and the aggregate alike.

mod api_support;

use api_support::TestApp;
use berth_domain::user::user_id;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

const FIXTURE: &str = include_str!("../fixtures/user_events_v1.json");

/// Stores the fixture's events as they are, version and all, the way the earlier
/// release's event store wrote them.
async fn store_fixture(app: &TestApp) -> Vec<Value> {
    let events: Vec<Value> = serde_json::from_str(FIXTURE).expect("the fixture is JSON");
    let sql = app.sql().await;
    for e in &events {
        let recorded_at: DateTime<Utc> = e["recorded_at"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("recorded_at");
        sql.execute(
            "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &Uuid::now_v7(),
                &e["aggregate_type"].as_str(),
                &e["aggregate_id"].as_str(),
                &e["sequence"].as_i64(),
                &e["event_type"].as_str(),
                &e["event_version"].as_str(),
                &e["payload"],
                &e["metadata"],
                &recorded_at,
            ],
        )
        .await
        .expect("storing a fixture event");
    }
    events
}

/// Polls `path` until `ready` accepts its JSON (the projections run in the background).
async fn eventually(app: &TestApp, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..300 {
        let answer = app.get(path).await;
        if answer.status == 200 && ready(&answer.json()) {
            return answer.json();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{path} never became ready");
}

#[tokio::test]
async fn a_version_1_key_event_loads_projects_and_stays_usable() {
    let app = TestApp::spawn().await;
    let events = store_fixture(&app).await;
    let user = user_id("legacy-ci");
    assert_eq!(
        events[0]["aggregate_id"].as_str(),
        Some(user.to_string().as_str()),
        "the fixture's user id is derived from its name"
    );
    let key_id = events[1]["payload"]["key_id"].as_str().expect("key id");
    let v1_hash = events[1]["payload"]["hash"].as_str().expect("v1 hash");

    // Projected: the identity read model lists the key with its v1 digest.
    let keys = eventually(&app, &format!("/api/v1/users/{user}/keys"), |k| {
        k["items"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await["items"]
        .clone();
    assert_eq!(keys[0]["id"], key_id);
    assert_eq!(keys[0]["prefix"], "berth_4f9c2a1b");
    assert_eq!(keys[0]["name"], "deploy");
    let stored_hash: String = app
        .sql()
        .await
        .query_one(
            "SELECT hash FROM api_keys WHERE id = $1",
            &[&key_id.parse::<Uuid>().ok()],
        )
        .await
        .expect("the key's row")
        .get(0);
    assert_eq!(stored_hash, v1_hash);

    // Summarised in the audit trail like a current event, without key material.
    // (The bootstrap administrator's key is a `user.key_created` too: wait for this one.)
    let audit = eventually(
        &app,
        "/api/v1/audit?action=user.key_created&actor=system:cli",
        |a| a["items"].as_array().is_some_and(|i| !i.is_empty()),
    )
    .await;
    let entry = &audit["items"][0];
    assert_eq!(entry["actor"], "system:cli");
    let summary = entry["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("legacy-ci"), "{summary}");
    assert!(!summary.contains(v1_hash), "{summary}");

    // The aggregate loads through the same chain: revoking the v1 key is a normal command,
    // and refusing a second revocation shows the aggregate knows the key's state.
    app.send(
        Method::DELETE,
        &format!("/api/v1/keys/{key_id}"),
        None,
        None,
        &[],
    )
    .await
    .expect(202);
    app.send(
        Method::DELETE,
        &format!("/api/v1/keys/{key_id}"),
        None,
        None,
        &[],
    )
    .await
    .expect_problem(409);

    // New keys are written in the current shape.
    app.post(
        &format!("/api/v1/users/{user}/keys"),
        &json!({"name": "next"}),
    )
    .await
    .expect(201);
    let row = app
        .sql()
        .await
        .query_one(
            "SELECT event_version, payload FROM events \
             WHERE aggregate_id = $1 AND event_type = 'ApiKeyCreated' ORDER BY sequence DESC LIMIT 1",
            &[&user.to_string()],
        )
        .await
        .expect("the new key's event");
    let (version, payload): (String, Value) = (row.get(0), row.get(1));
    assert_eq!(version, "2");
    assert_eq!(payload["digest"]["algorithm"], "hmac-sha256");
    assert!(payload.get("hash").is_none(), "{payload}");
    app.stop().await;
}
