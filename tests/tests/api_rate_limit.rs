//! Rate limiting per credential over real HTTP: a burst over the limit gets `429`
//! problems with `Retry-After`, a refused command writes nothing, waiting that long is
//! enough, and neither unauthenticated requests nor health checks are counted.

mod api_support;

use std::time::Duration;

use api_support::{fixture_entry, TestApp};
use berth_api::http::rate_limit::RateLimitOptions;
use reqwest::Method;

#[tokio::test]
async fn a_burst_over_the_limit_is_refused_with_retry_after() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limit = RateLimitOptions {
            per_second: 5,
            burst: 5,
        };
    })
    .await;

    let mut answers = Vec::new();
    for _ in 0..20 {
        answers.push(app.get("/api/v1/catalog").await);
    }
    let ok = answers.iter().filter(|a| a.status.as_u16() == 200).count();
    let limited: Vec<_> = answers
        .iter()
        .filter(|a| a.status.as_u16() == 429)
        .collect();
    assert_eq!(ok + limited.len(), 20, "only 200 or 429 expected");
    assert!(ok >= 5, "the burst of 5 was not allowed: {ok} succeeded");
    assert!(limited.len() >= 10, "only {} were limited", limited.len());
    let mut retry_after = 0;
    for a in &limited {
        a.expect_problem(429);
        assert_eq!(a.json()["type"], "urn:berth:problem:too-many-requests");
        let secs: u64 = a
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Retry-After in seconds: {a}"));
        assert!((1..=1).contains(&secs), "Retry-After {secs} at 5/s");
        retry_after = retry_after.max(secs);
    }

    // The bucket is empty: a command is refused and writes nothing.
    let before = app.head().await;
    let a = app.post("/api/v1/catalog", &fixture_entry("limited")).await;
    a.expect_problem(429);
    assert_eq!(app.head().await, before, "a refused command wrote events");

    // Unauthenticated requests are refused before they are counted; health is free.
    app.send(Method::GET, "/api/v1/catalog", None, Some("wrong"), &[])
        .await
        .expect_problem(401);
    app.send(Method::GET, "/api/v1/catalog", None, Some(""), &[])
        .await
        .expect_problem(401);
    app.get("/healthz").await.expect(200);
    app.get("/metrics").await.expect(200);

    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    app.post("/api/v1/catalog", &fixture_entry("after-the-wait"))
        .await
        .expect(201);
    app.get("/api/v1/catalog").await.expect(200);
}
