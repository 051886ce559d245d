//! The shipped catalog, idempotent across restarts; the OpenAPI document against the
//! app's routes; health, readiness and metrics.

mod api_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use api_support::TestApp;
use reqwest::Method;

async fn catalog_events(app: &TestApp) -> i64 {
    app.sql()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE aggregate_type = 'catalog_entry'",
            &[],
        )
        .await
        .expect("counting catalog events")
        .get(0)
}

#[tokio::test]
async fn the_shipped_catalog_is_listed_and_restarts_add_no_events() {
    let mut app = TestApp::spawn().await;
    let shipped = berth_api::serve::predefined::definitions().expect("the shipped catalog parses");
    let head = app.head().await;
    let listed = app
        .get(&format!(
            "/api/v1/catalog?kind=predefined&page_size=500&min_position={head}"
        ))
        .await;
    listed.expect(200);
    let doc = listed.json();
    assert_eq!(doc["total"], shipped.len());
    assert_eq!(doc["page"], 1);
    assert_eq!(doc["page_size"], 500);
    let items = doc["items"].as_array().cloned().unwrap_or_default();
    let names: BTreeSet<String> = items
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default().to_string())
        .collect();
    let expected: BTreeSet<String> = shipped.iter().map(|d| d.name.clone()).collect();
    assert_eq!(names, expected);
    for item in &items {
        assert_eq!(item["kind"], "predefined");
        assert_eq!(item["version"], 1);
        for field in [
            "id",
            "name",
            "description",
            "kind",
            "transport",
            "runtime",
            "config_schema",
            "resources",
            "version",
            "tools",
        ] {
            assert!(!item[field].is_null(), "{field} missing in {item}");
        }
    }
    let github = items
        .iter()
        .find(|e| e["name"] == "github")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        github["runtime"]["image"],
        "ghcr.io/github/github-mcp-server"
    );
    let stdio = app
        .get("/api/v1/catalog?transport=stdio&q=GITHUB")
        .await
        .json();
    assert_eq!(stdio["total"], 1);

    let audit = app
        .get(&format!(
            "/api/v1/audit?actor=system:catalog-sync&min_position={head}"
        ))
        .await;
    assert_eq!(audit.json()["total"], shipped.len());

    let before = catalog_events(&app).await;
    assert_eq!(before, i64::try_from(shipped.len()).unwrap_or_default());
    let token = app.token().to_string();
    app.restart().await;
    assert_eq!(
        catalog_events(&app).await,
        before,
        "a restart re-registered the catalog"
    );
    assert_eq!(app.token(), token, "the admin token is reused");
    app.get("/api/v1/catalog?kind=predefined").await.expect(200);
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = TestApp::spawn().await;
    app.send(Method::GET, "/api/v1/openapi.json", None, Some(""), &[])
        .await
        .expect_problem(401);
    let answer = app.get("/api/v1/openapi.json").await;
    answer.expect(200);
    let doc = answer.json();
    assert!(doc["openapi"]
        .as_str()
        .unwrap_or_default()
        .starts_with("3."));
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    let routes = berth_api::http::routes::all_routes();
    assert!(routes.len() >= 23);
    for (method, path) in &routes {
        let method = method.as_str().to_ascii_lowercase();
        assert!(
            paths.get(path).and_then(|p| p.get(&method)).is_some(),
            "{method} {path} is missing from the OpenAPI document"
        );
        // Every route of the table really is served (none answers 404, but for a
        // resource that does not exist, or 405).
        let mut probe = path.replace("{id}", &api_support::uuid());
        if path == "/api/v1/events/stream" {
            // A stream never ends: a cursor it refuses proves the route without one.
            probe.push_str("?after=-1");
        }
        let status = app
            .send(
                method.to_uppercase().parse().unwrap_or(Method::GET),
                &probe,
                None,
                None,
                &[],
            )
            .await
            .status
            .as_u16();
        assert!(
            status != 405 && (status != 404 || path.contains("{id}") || path.contains("{name}")),
            "{method} {path} answered {status}"
        );
    }
    let events = &paths["/api/v1/events"]["get"]["description"];
    assert!(
        events.as_str().unwrap_or_default().contains("commit order"),
        "{events}"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    app.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_need_no_token() {
    let app = TestApp::spawn().await;
    let healthz = app.send(Method::GET, "/healthz", None, Some(""), &[]).await;
    healthz.expect(200);
    assert_eq!(healthz.json()["status"], "ok");
    assert!(healthz.header("x-request-id").is_some());

    let given = api_support::uuid();
    let echoed = app
        .send(
            Method::GET,
            "/healthz",
            None,
            Some(""),
            &[("x-request-id", &given)],
        )
        .await;
    assert_eq!(echoed.header("x-request-id"), Some(given));
    let malformed = app
        .send(
            Method::GET,
            "/healthz",
            None,
            Some(""),
            &[("x-request-id", "<script>")],
        )
        .await;
    assert_ne!(
        malformed.header("x-request-id").as_deref(),
        Some("<script>")
    );

    // Projections catch up with the shipped catalog within moments of the start.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = app.send(Method::GET, "/readyz", None, Some(""), &[]).await;
        if ready.status.as_u16() == 200 {
            break;
        }
        ready.expect_problem(503);
        assert!(Instant::now() < deadline, "never ready: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    app.get("/api/v1/servers").await.expect(200);
    let metrics = app.send(Method::GET, "/metrics", None, Some(""), &[]).await;
    metrics.expect(200);
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    let head = app.head().await;
    for line in [
        "berth_http_requests_total{method=\"GET\",route=\"/api/v1/servers\",status=\"200\"} 1"
            .to_string(),
        "berth_http_request_duration_seconds_bucket".to_string(),
        "berth_projection_lag_seconds{projection=\"catalog\"}".to_string(),
        "berth_projection_position{projection=\"audit\"}".to_string(),
        format!("berth_event_store_head_position {head}"),
        "berth_oldest_open_transaction_age_seconds".to_string(),
    ] {
        assert!(text.contains(&line), "metrics lack {line}:\n{text}");
    }
    app.stop().await;
}
