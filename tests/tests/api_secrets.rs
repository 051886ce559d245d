//! Secrets never leave in plaintext: not in an API answer, an event, a read model or
//! a log line.

mod api_support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use api_support::{server_body, TestApp};
use reqwest::Method;
use serde_json::json;

/// Collects every log line of this test process.
#[derive(Clone, Default)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn secret_values_appear_nowhere_in_plaintext() {
    let logs = LogSink::default();
    let sink = logs.clone();
    let installed = tracing_subscriber::fmt()
        .with_env_filter(
            "debug,berth_api=trace,berth_application=trace,berth_infrastructure=trace,berth_projections=trace",
        )
        .with_writer(move || sink.clone())
        .try_init();
    assert!(installed.is_ok(), "this test must own the log output");

    let app = TestApp::spawn().await;
    let first = format!("berth-plaintext-{}", uuid::Uuid::new_v4().simple());
    let rotated = format!("berth-rotated-{}", uuid::Uuid::new_v4().simple());
    let refused = format!("berth-refused-{}", uuid::Uuid::new_v4().simple());

    let catalog_id = app.register_fixture("secretive").await.expect(201).id();
    let created = app
        .post(
            "/api/v1/servers",
            &server_body(&catalog_id, "secretive", &first),
        )
        .await;
    created.expect(201);
    let server_id = created.id();

    // Refused requests do not echo the secret either.
    let mut bad = server_body(&catalog_id, "refused", &refused);
    bad["secrets"]["NOT_A_KEY"] = json!(refused.clone());
    app.post("/api/v1/servers", &bad).await.expect_problem(422);

    let patched = app
        .json(
            Method::PATCH,
            &format!("/api/v1/servers/{server_id}"),
            &json!({"secrets": {"API_TOKEN": rotated}, "config": {"MODE": "slow"}}),
        )
        .await;
    patched.expect(202);
    let last = patched.position();

    let server = app
        .get(&format!("/api/v1/servers/{server_id}?min_position={last}"))
        .await;
    server.expect(200);
    assert_eq!(server.json()["secrets"], json!({"API_TOKEN": "********"}));
    assert_eq!(server.json()["config"]["MODE"], "slow");
    app.get(&format!("/api/v1/servers?min_position={last}"))
        .await
        .expect(200);
    app.get(&format!("/api/v1/servers/{server_id}/events"))
        .await
        .expect(200);
    app.get("/api/v1/events?limit=1000").await.expect(200);
    app.get(&format!("/api/v1/audit?min_position={last}&page_size=500"))
        .await
        .expect(200);
    app.get("/api/v1/audit/export?format=jsonl")
        .await
        .expect(200);
    app.get("/api/v1/audit/export?format=csv").await.expect(200);
    let catalog = app
        .get(&format!("/api/v1/catalog?min_position={last}"))
        .await;
    catalog.expect(200);

    let transcript = app.transcript();
    let sql = app.sql().await;
    let events: Vec<String> = sql
        .query("SELECT e::text FROM events e", &[])
        .await
        .expect("reading events")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        events.iter().any(|e| e.contains("API_TOKEN")),
        "the sealed secret is stored"
    );
    let tables: Vec<String> = sql
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .expect("listing tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        tables.len() >= 4,
        "expected the event store and read models, got {tables:?}"
    );
    let mut stored = events.join("\n");
    for table in &tables {
        // Table names come from the catalog, not from input; quoted all the same.
        let query = format!("SELECT t::text FROM \"{}\" t", table.replace('"', "\"\""));
        for row in sql.query(&query, &[]).await.expect("reading a table") {
            stored.push_str(row.get::<_, &str>(0));
            stored.push('\n');
        }
    }
    app.stop().await;
    let log_lines = logs.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(!log_lines.is_empty(), "logs were captured");

    for secret in [&first, &rotated, &refused] {
        assert!(
            !contains(&transcript, secret),
            "an API answer holds {secret}"
        );
        assert!(
            !stored.contains(secret.as_str()),
            "the database holds {secret}"
        );
        assert!(!contains(&log_lines, secret), "a log line holds {secret}");
    }
}
