//! Bad input over real HTTP: each request gets its documented status as a problem
//! document, and none of them writes an event.

mod api_support;

use api_support::{server_body, uuid, Answer, TestApp};
use reqwest::Method;
use serde_json::json;

/// Sends `request`, checks the problem status, and that the event store did not move.
/// `request` is a future, so it runs only after the head position was read.
async fn refused(
    app: &TestApp,
    status: u16,
    request: impl std::future::Future<Output = Answer>,
) -> Answer {
    let before = app.head().await;
    let answer = request.await;
    answer.expect_problem(status);
    assert_eq!(
        app.head().await,
        before,
        "a refused request wrote events: {answer}"
    );
    answer
}

#[tokio::test]
async fn malformed_and_invalid_bodies_change_nothing() {
    let app = TestApp::spawn().await;
    let catalog_id = app.register_fixture("bad-input").await.expect(201).id();
    let raw = |body: &str| Some(body.as_bytes().to_vec());

    let a = refused(
        &app,
        400,
        app.send(
            Method::POST,
            "/api/v1/catalog",
            raw("{\"name\": "),
            None,
            &[],
        ),
    )
    .await;
    assert!(
        a.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("not valid JSON"),
        "{a}"
    );

    let mut unknown = api_support::fixture_entry("unknown-field");
    unknown["colour"] = json!("blue");
    let a = refused(&app, 400, app.post("/api/v1/catalog", &unknown)).await;
    assert_eq!(a.problem_fields(), ["colour"]);

    let mut nested = api_support::fixture_entry("unknown-nested");
    nested["resources"]["gpus"] = json!(1);
    let a = refused(&app, 400, app.post("/api/v1/catalog", &nested)).await;
    assert_eq!(a.problem_fields(), ["resources.gpus"]);

    let mut wrong_type = api_support::fixture_entry("wrong-type");
    wrong_type["name"] = json!(5);
    let a = refused(&app, 400, app.post("/api/v1/catalog", &wrong_type)).await;
    assert_eq!(a.problem_fields(), ["name"]);

    let a = refused(
        &app,
        400,
        app.post(
            "/api/v1/servers",
            &json!({"catalog_id": "not-a-uuid", "name": "x"}),
        ),
    )
    .await;
    assert_eq!(a.problem_fields(), ["catalog_id"]);

    let mut bad_image = api_support::fixture_entry("bad-image");
    bad_image["runtime"]["image"] = json!("Not An Image");
    let a = refused(&app, 422, app.post("/api/v1/catalog", &bad_image)).await;
    assert_eq!(a.problem_fields(), ["runtime.image"]);

    // Server bodies, validated against the entry's config schema.
    let mut missing = server_body(&catalog_id, "missing-key", "t");
    missing["config"] = json!({});
    let a = refused(&app, 422, app.post("/api/v1/servers", &missing)).await;
    assert_eq!(a.problem_fields(), ["config.API_URL"]);

    let mut extra = server_body(&catalog_id, "unknown-key", "t");
    extra["config"]["NOPE"] = json!("x");
    let a = refused(&app, 422, app.post("/api/v1/servers", &extra)).await;
    assert_eq!(a.problem_fields(), ["config.NOPE"]);

    let mut number = server_body(&catalog_id, "number-value", "t");
    number["config"]["API_URL"] = json!(8080);
    let a = refused(&app, 422, app.post("/api/v1/servers", &number)).await;
    assert_eq!(a.problem_fields(), ["config.API_URL"]);

    let mut object = server_body(&catalog_id, "object-secret", "t");
    object["secrets"]["API_TOKEN"] = json!({"nested": true});
    let a = refused(&app, 422, app.post("/api/v1/servers", &object)).await;
    assert_eq!(a.problem_fields(), ["secrets.API_TOKEN"]);

    let a = refused(
        &app,
        422,
        app.post(
            "/api/v1/servers",
            &server_body(&catalog_id, "bad name!", "t"),
        ),
    )
    .await;
    assert_eq!(a.problem_fields(), ["name"]);

    let a = refused(
        &app,
        422,
        app.post("/api/v1/servers", &server_body(&uuid(), "no-entry", "t")),
    )
    .await;
    assert_eq!(a.problem_fields(), ["catalog_id"]);

    let mut huge = server_body(&catalog_id, "huge", "t");
    huge["config"]["API_URL"] = json!("x".repeat(1024 * 1024 + 1));
    refused(&app, 413, app.post("/api/v1/servers", &huge)).await;

    let a = refused(
        &app,
        415,
        app.send(
            Method::POST,
            "/api/v1/catalog",
            raw("{}"),
            None,
            &[("content-type", "text/plain")],
        ),
    )
    .await;
    assert_eq!(a.status.as_u16(), 415);

    // PATCH: non-string values are named; null removes only optional keys.
    let server_id = app
        .post("/api/v1/servers", &server_body(&catalog_id, "patched", "t"))
        .await
        .expect(201)
        .id();
    let path = format!("/api/v1/servers/{server_id}");
    let a = refused(
        &app,
        422,
        app.json(Method::PATCH, &path, &json!({"config": {"MODE": true}})),
    )
    .await;
    assert_eq!(a.problem_fields(), ["config.MODE"]);
    let a = refused(
        &app,
        422,
        app.json(Method::PATCH, &path, &json!({"config": {"API_URL": null}})),
    )
    .await;
    assert_eq!(a.problem_fields(), ["config.API_URL"]);
    refused(
        &app,
        400,
        app.json(Method::PATCH, &path, &json!({"colour": {}})),
    )
    .await;
    app.json(Method::PATCH, &path, &json!({"config": {"MODE": "slow"}}))
        .await
        .expect(202);
    app.stop().await;
}

#[tokio::test]
async fn unknown_ids_missing_tokens_and_conflicts_are_refused() {
    let app = TestApp::spawn().await;
    let catalog_id = app.register_fixture("conflicts").await.expect(201).id();
    let server_id = app
        .post(
            "/api/v1/servers",
            &server_body(&catalog_id, "conflicted", "t"),
        )
        .await
        .expect(201)
        .id();
    let ghost = uuid();

    refused(&app, 404, app.get(&format!("/api/v1/servers/{ghost}"))).await;
    refused(
        &app,
        404,
        app.command(&format!("/api/v1/servers/{ghost}/start")),
    )
    .await;
    refused(
        &app,
        404,
        app.json(
            Method::PATCH,
            &format!("/api/v1/servers/{ghost}"),
            &json!({}),
        ),
    )
    .await;
    refused(
        &app,
        404,
        app.send(
            Method::DELETE,
            &format!("/api/v1/servers/{ghost}"),
            None,
            None,
            &[],
        ),
    )
    .await;
    refused(&app, 404, app.get(&format!("/api/v1/catalog/{ghost}"))).await;
    refused(
        &app,
        404,
        app.json(
            Method::PUT,
            &format!("/api/v1/catalog/{ghost}"),
            &api_support::fixture_entry("ghost"),
        ),
    )
    .await;
    refused(
        &app,
        404,
        app.send(
            Method::DELETE,
            &format!("/api/v1/catalog/{ghost}"),
            None,
            None,
            &[],
        ),
    )
    .await;
    let a = refused(&app, 400, app.get("/api/v1/servers/not-a-uuid")).await;
    assert_eq!(a.problem_fields(), ["id"]);
    refused(&app, 404, app.get("/api/v1/no-such-route")).await;
    refused(&app, 404, app.get("/nowhere")).await;
    refused(
        &app,
        405,
        app.send(Method::PUT, "/api/v1/servers", None, None, &[]),
    )
    .await;

    // Authentication.
    for token in ["", "berth_wrong", "not even a token"] {
        let a = refused(
            &app,
            401,
            app.send(Method::GET, "/api/v1/servers", None, Some(token), &[]),
        )
        .await;
        assert_eq!(a.header("www-authenticate").as_deref(), Some("Bearer"));
        refused(
            &app,
            401,
            app.send(
                Method::POST,
                "/api/v1/catalog",
                Some(b"{}".to_vec()),
                Some(token),
                &[],
            ),
        )
        .await;
    }
    let basic = refused(
        &app,
        401,
        app.send(
            Method::GET,
            "/api/v1/servers",
            None,
            Some(""),
            &[("authorization", "Basic YWRtaW46YWRtaW4=")],
        ),
    )
    .await;
    assert!(!String::from_utf8_lossy(&basic.body).contains("YWRtaW4"));

    // State conflicts name the state.
    let a = refused(
        &app,
        409,
        app.command(&format!("/api/v1/servers/{server_id}/stop")),
    )
    .await;
    assert!(
        a.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("stopped"),
        "{a}"
    );
    let a = refused(
        &app,
        409,
        app.command(&format!("/api/v1/servers/{server_id}/enable")),
    )
    .await;
    assert!(
        a.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("enabled"),
        "{a}"
    );
    app.command(&format!("/api/v1/servers/{server_id}/disable"))
        .await
        .expect(202);
    let a = refused(
        &app,
        409,
        app.command(&format!("/api/v1/servers/{server_id}/start")),
    )
    .await;
    assert!(
        a.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("disabled"),
        "{a}"
    );

    let predefined = app
        .get("/api/v1/catalog?kind=predefined&page_size=1")
        .await
        .json();
    let predefined_id = predefined["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!predefined_id.is_empty());
    let a = refused(
        &app,
        409,
        app.send(
            Method::DELETE,
            &format!("/api/v1/catalog/{predefined_id}"),
            None,
            None,
            &[],
        ),
    )
    .await;
    assert!(
        a.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("predefined"),
        "{a}"
    );

    // Paging and query parameters.
    let a = refused(&app, 422, app.get("/api/v1/servers?page_size=501")).await;
    assert_eq!(a.problem_fields(), ["page_size"]);
    let a = refused(&app, 422, app.get("/api/v1/catalog?page=0")).await;
    assert_eq!(a.problem_fields(), ["page"]);
    let a = refused(&app, 400, app.get("/api/v1/audit?page=two")).await;
    assert_eq!(a.problem_fields(), ["page"]);
    let a = refused(&app, 400, app.get("/api/v1/servers?sate=running")).await;
    assert_eq!(a.problem_fields(), ["sate"]);
    let a = refused(&app, 400, app.get("/api/v1/servers?state=sleeping")).await;
    assert_eq!(a.problem_fields(), ["state"]);
    let a = refused(&app, 400, app.get("/api/v1/audit?from=yesterday")).await;
    assert_eq!(a.problem_fields(), ["from"]);
    let a = refused(
        &app,
        422,
        app.get("/api/v1/audit/export?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(a.problem_fields(), ["to"]);
    app.stop().await;
}

#[tokio::test]
async fn limits_on_depth_map_sizes_and_query_values() {
    let app = TestApp::spawn().await;
    let catalog_id = app.register_fixture("limits").await.expect(201).id();

    let deep = format!("{{\"name\": {}{}}}", "[".repeat(40), "]".repeat(40));
    let a = refused(
        &app,
        400,
        app.send(
            Method::POST,
            "/api/v1/catalog",
            Some(deep.into_bytes()),
            None,
            &[],
        ),
    )
    .await;
    assert!(
        a.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("deeper than 32"),
        "{a}"
    );

    let mut many = server_body(&catalog_id, "many-keys", "tok");
    for i in 0..101 {
        many["config"][format!("K{i}")] = json!("v");
    }
    let a = refused(&app, 422, app.post("/api/v1/servers", &many)).await;
    assert_eq!(a.problem_fields(), ["config"]);

    let mut long_key = server_body(&catalog_id, "long-key", "tok");
    long_key["secrets"]["K".repeat(129)] = json!("v");
    let a = refused(&app, 422, app.post("/api/v1/servers", &long_key)).await;
    assert_eq!(a.problem_fields(), ["secrets"]);

    let q = "x".repeat(257);
    let a = app.get(&format!("/api/v1/catalog?q={q}")).await;
    a.expect_problem(400);
    assert_eq!(a.problem_fields(), ["q"]);
    app.get(&format!("/api/v1/catalog?q={}", &q[..256]))
        .await
        .expect(200);

    let a = app.get(&format!("/api/v1/servers/{}x", uuid())).await;
    a.expect_problem(400);
}

/// A NUL byte cannot be stored in any text column: every text parameter refuses it at
/// the edge with a 400 naming it, instead of a database error (500).
#[tokio::test]
async fn a_nul_byte_in_any_text_parameter_is_a_bad_request_naming_it() {
    let app = TestApp::spawn().await;
    for (path, parameter) in [
        ("/api/v1/servers?q=%00", "q"),
        ("/api/v1/catalog?q=a%00b", "q"),
        ("/api/v1/events?event_type=%00", "event_type"),
        ("/api/v1/events?aggregate_type=%00", "aggregate_type"),
        ("/api/v1/events?aggregate_id=%00", "aggregate_id"),
        ("/api/v1/audit?actor=%00", "actor"),
        ("/api/v1/audit?action=%00", "action"),
        ("/api/v1/audit/export?actor=%00", "actor"),
        ("/api/v1/audit/export?action=x%00", "action"),
        ("/api/v1/events/stream?event_type=%00", "event_type"),
    ] {
        let answer = refused(&app, 400, app.get(path)).await;
        assert_eq!(answer.problem_fields(), vec![parameter], "{path}: {answer}");
    }
    // Path ids are typed: a NUL there is a malformed id.
    let answer = refused(&app, 400, app.get("/api/v1/servers/%00")).await;
    assert_eq!(answer.problem_fields(), vec!["id"], "{answer}");
    app.stop().await;
}
