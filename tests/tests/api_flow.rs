//! The API end to end over real HTTP and PostgreSQL: catalog entry → server → start →
//! stop → audit trail, the event feed paged exactly once, and read-your-writes.

mod api_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use api_support::{server_body, uuid, TestApp};
use reqwest::Method;
use serde_json::Value;

/// Sends a command with a chosen request id and checks the answer echoes it and carries
/// its position in body and header alike.
async fn command(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<&Value>,
    status: u16,
) -> (String, i64, String) {
    let request_id = uuid();
    let bytes = body.map(|b| serde_json::to_vec(b).expect("serialising"));
    let answer = app
        .send(method, path, bytes, None, &[("x-request-id", &request_id)])
        .await;
    answer.expect(status);
    assert_eq!(
        answer.header("x-request-id").as_deref(),
        Some(request_id.as_str())
    );
    let position = answer.position();
    assert_eq!(answer.header("berth-position"), Some(position.to_string()));
    (answer.id(), position, request_id)
}

#[tokio::test]
async fn a_server_goes_from_catalog_entry_to_audit_trail() {
    let app = TestApp::spawn().await;

    let entry = api_support::fixture_entry("e2e-fixture");
    let (catalog_id, p1, rid_register) =
        command(&app, Method::POST, "/api/v1/catalog", Some(&entry), 201).await;
    let got = app
        .get(&format!("/api/v1/catalog/{catalog_id}?min_position={p1}"))
        .await;
    got.expect(200);
    let view = got.json();
    assert_eq!(view["kind"], "custom");
    assert_eq!(view["version"], 1);
    assert_eq!(view["runtime"]["image"], "berth/fixture:latest");

    let body = server_body(&catalog_id, "e2e-server", "flow-secret-value");
    let (server_id, p2, rid_create) =
        command(&app, Method::POST, "/api/v1/servers", Some(&body), 201).await;
    assert!(p2 > p1);
    let server = app
        .get(&format!("/api/v1/servers/{server_id}?min_position={p2}"))
        .await;
    server.expect(200);
    let server = server.json();
    assert_eq!(server["state"], "stopped");
    assert_eq!(server["enabled"], true);
    assert_eq!(server["owner"], "user:admin");
    assert_eq!(server["config"]["API_URL"], "https://example.test/api");
    assert_eq!(server["secrets"]["API_TOKEN"], "********");

    let (_, p3, rid_start) = command(
        &app,
        Method::POST,
        &format!("/api/v1/servers/{server_id}/start"),
        None,
        202,
    )
    .await;
    let server = app
        .get(&format!("/api/v1/servers/{server_id}?min_position={p3}"))
        .await
        .json();
    // No runtime is running in these tests: the start request stays pending.
    assert_eq!(server["state"], "pending");

    let (_, p4, rid_stop) = command(
        &app,
        Method::POST,
        &format!("/api/v1/servers/{server_id}/stop"),
        None,
        202,
    )
    .await;
    let server = app
        .get(&format!("/api/v1/servers/{server_id}?min_position={p4}"))
        .await
        .json();
    assert_eq!(server["state"], "stopping");

    let listed = app
        .get(&format!(
            "/api/v1/servers?state=stopping&catalog_id={catalog_id}&min_position={p4}"
        ))
        .await;
    listed.expect(200);
    assert_eq!(listed.json()["total"], 1);
    assert_eq!(listed.json()["items"][0]["id"], server_id.as_str());

    // The audit trail names the admin, the action and the request of every step.
    let audit = app
        .get(&format!("/api/v1/audit?min_position={p4}&page_size=500"))
        .await;
    audit.expect(200);
    let entries = audit.json()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let step = |action: &str, target: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["target_id"] == target)
            .cloned()
            .unwrap_or_else(|| panic!("no audit entry {action} for {target} in {entries:#?}"))
    };
    for (action, target, request_id) in [
        ("catalog_entry.registered", &catalog_id, &rid_register),
        ("server.created", &server_id, &rid_create),
        ("server.start_requested", &server_id, &rid_start),
        ("server.stop_requested", &server_id, &rid_stop),
    ] {
        let e = step(action, target);
        assert_eq!(e["actor"], "user:admin", "{e}");
        assert_eq!(e["request_id"], request_id.as_str(), "{e}");
    }
    let by_server = app
        .get(&format!(
            "/api/v1/audit?server_id={server_id}&actor=user:admin"
        ))
        .await
        .json();
    assert_eq!(by_server["total"], 3);

    // The server's own events, oldest first.
    let own = app
        .get(&format!("/api/v1/servers/{server_id}/events"))
        .await;
    own.expect(200);
    let types: Vec<Value> = own.json()["events"]
        .as_array()
        .map(|events| events.iter().map(|e| e["event_type"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        types,
        [
            "ServerCreated",
            "ServerStartRequested",
            "ServerStopRequested"
        ]
    );
    app.get(&format!("/api/v1/servers/{}/events", uuid()))
        .await
        .expect_problem(404);

    // Illegal transition: stopping a server that is already stopping is refused by name.
    let again = app
        .command(&format!("/api/v1/servers/{server_id}/stop"))
        .await;
    again.expect_problem(409);
    assert!(
        again.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("stopping"),
        "{again}"
    );

    app.stop().await;
}

#[tokio::test]
async fn the_event_feed_pages_through_everything_exactly_once() {
    let app = TestApp::spawn().await;
    let catalog_id = app.register_fixture("feed-fixture").await.expect(201).id();
    for i in 0..3 {
        let id = app
            .post(
                "/api/v1/servers",
                &server_body(&catalog_id, &format!("feed-{i}"), "s"),
            )
            .await
            .expect(201)
            .id();
        app.command(&format!("/api/v1/servers/{id}/start"))
            .await
            .expect(202);
    }

    let rows = app
        .sql()
        .await
        .query(
            "SELECT global_position FROM events ORDER BY transaction_id, global_position",
            &[],
        )
        .await
        .expect("reading the events");
    let stored: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    // The feed holds events back while any older transaction in the cluster is open
    // (other tests' too), so an empty page means "nothing more yet": keep paging until
    // everything stored has been delivered.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = app
            .get(&format!("/api/v1/events?after={after}&limit=2"))
            .await;
        page.expect(200);
        let doc = page.json();
        let events = doc["events"].as_array().cloned().unwrap_or_default();
        assert!(events.len() <= 2);
        for e in &events {
            for field in [
                "position",
                "event_id",
                "aggregate_type",
                "aggregate_id",
                "sequence",
                "event_type",
                "event_version",
                "payload",
                "metadata",
                "recorded_at",
            ] {
                assert!(!e[field].is_null(), "{field} missing in {e}");
            }
            seen.push(e["position"].as_i64().unwrap_or_default());
        }
        let next = doc["next"].as_i64().unwrap_or_default();
        if events.is_empty() {
            assert_eq!(next, after, "an empty page keeps the cursor");
            if seen.len() >= stored.len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the feed never delivered everything"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        assert_eq!(next, *seen.last().unwrap_or(&0));
        after = next;
    }
    assert_eq!(seen, stored, "every event once, in commit order");
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());

    // Filters narrow the feed.
    app.feed_settled().await;
    let servers = app
        .get("/api/v1/events?aggregate_type=server&event_type=ServerCreated&limit=1000")
        .await
        .json();
    assert_eq!(servers["events"].as_array().map(Vec::len), Some(3));
    app.get("/api/v1/events?limit=1001")
        .await
        .expect_problem(422);
    app.stop().await;
}

#[tokio::test]
async fn min_position_reads_your_writes_and_gives_up_after_five_seconds() {
    let app = TestApp::spawn().await;
    let created = app.register_fixture("ryw-fixture").await;
    created.expect(201);
    let (id, position) = (created.id(), created.position());
    let listed = app
        .get(&format!(
            "/api/v1/catalog?q=ryw-fixture&min_position={position}"
        ))
        .await;
    listed.expect(200);
    assert_eq!(listed.json()["total"], 1);
    assert_eq!(listed.json()["items"][0]["id"], id.as_str());

    let removed = app
        .send(
            Method::DELETE,
            &format!("/api/v1/catalog/{id}"),
            None,
            None,
            &[],
        )
        .await;
    removed.expect(202);
    let after = app
        .get(&format!(
            "/api/v1/catalog/{id}?min_position={}",
            removed.position()
        ))
        .await;
    after.expect_problem(404);

    // A position no write answered: refused at once, naming the parameter.
    let far = app.head().await + 1_000_000;
    let started = Instant::now();
    let beyond = app
        .get(&format!("/api/v1/servers?min_position={far}"))
        .await;
    beyond.expect_problem(422);
    assert_eq!(beyond.problem_fields(), vec!["min_position"]);
    assert!(started.elapsed() < Duration::from_secs(2));

    // A read model that cannot get past an event (one it cannot decode, written behind
    // the API's back): a query waiting for that event's position gives up after 5 s with
    // a 503 and Retry-After.
    let sql = app.sql().await;
    let poison: i64 = sql
        .query_one(
            "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) \
             VALUES (gen_random_uuid(), 'server', gen_random_uuid()::text, 1, 'ServerCreated', \
             '1', '{\"type\": \"created\", \"not\": \"a server\"}', '{}') \
             RETURNING global_position",
            &[],
        )
        .await
        .expect("writing an event no projector can read")
        .get(0);
    let started = Instant::now();
    let late = app
        .get(&format!("/api/v1/servers?min_position={poison}"))
        .await;
    let waited = started.elapsed();
    late.expect_problem(503);
    assert!(late.header("retry-after").is_some(), "{late}");
    assert!(
        waited >= Duration::from_millis(4500),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(8), "waited {waited:?}");
    app.stop().await;
}

#[tokio::test]
async fn the_audit_trail_exports_in_full_as_jsonl_and_csv() {
    let app = TestApp::spawn().await;
    let catalog_id = app
        .register_fixture("export-fixture")
        .await
        .expect(201)
        .id();
    let server_id = app
        .post(
            "/api/v1/servers",
            &server_body(&catalog_id, "exported", "s"),
        )
        .await
        .expect(201)
        .id();
    // More entries than one export batch (1000), so the stream spans several batches.
    let mut last = 0;
    for _ in 0..510 {
        app.command(&format!("/api/v1/servers/{server_id}/disable"))
            .await
            .expect(202);
        last = app
            .command(&format!("/api/v1/servers/{server_id}/enable"))
            .await
            .expect(202)
            .position();
    }
    let total = app
        .get(&format!("/api/v1/audit?min_position={last}&page_size=1"))
        .await
        .json()["total"]
        .as_i64()
        .unwrap_or_default();
    assert!(total > 1000, "only {total} audit entries");

    let jsonl = app.get("/api/v1/audit/export?format=jsonl").await;
    jsonl.expect(200);
    assert_eq!(
        jsonl.header("content-type").as_deref(),
        Some("application/x-ndjson")
    );
    let text = String::from_utf8_lossy(&jsonl.body).to_string();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(i64::try_from(lines.len()).unwrap_or_default(), total);
    let positions: Vec<i64> = lines
        .iter()
        .map(|l| l["position"].as_i64().unwrap_or_default())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "oldest first, each once"
    );

    let csv = app.get("/api/v1/audit/export?format=csv").await;
    csv.expect(200);
    assert!(csv
        .header("content-disposition")
        .unwrap_or_default()
        .contains("berth-audit.csv"));
    let text = String::from_utf8_lossy(&csv.body).to_string();
    let rows: Vec<&str> = text.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(
        rows[0],
        "position,at,actor,action,target_type,target_id,summary,request_id,correlation_id,causation_id"
    );
    assert_eq!(i64::try_from(rows.len()).unwrap_or_default(), total + 1);

    let only_disables = app
        .get(&format!(
            "/api/v1/audit/export?format=jsonl&action=server.disabled&server_id={server_id}"
        ))
        .await;
    assert_eq!(
        String::from_utf8_lossy(&only_disables.body).lines().count(),
        510
    );
    let none = app
        .get("/api/v1/audit/export?format=csv&from=2999-01-01T00:00:00Z")
        .await;
    none.expect(200);
    assert_eq!(
        String::from_utf8_lossy(&none.body)
            .split("\r\n")
            .filter(|r| !r.is_empty())
            .count(),
        1
    );
    app.stop().await;
}
