//! What happens to what a credential opened when it stops working, and how the last
//! administrator keeps the installation manageable: live streams end within a second of
//! a revocation or a disabled user, with a final message saying why; the last active
//! administrator cannot be disabled; a disabled user can be enabled again.

mod api_support;
mod live_support;

use std::time::{Duration, Instant};

use api_support::{user, TestApp};
use live_support::{stream_client, Endpoint, Received, SseClient, WsClient};
use reqwest::Method;

/// Waits for the stream's final message (skipping events) and returns it with how long
/// it took from `since`.
async fn sse_end(stream: &mut SseClient, since: Instant) -> (String, String, Duration) {
    loop {
        match stream.next(Duration::from_secs(10)).await {
            Received::Event(_) => continue,
            Received::End(message) => {
                return (
                    message.event.unwrap_or_default(),
                    message.data,
                    since.elapsed(),
                )
            }
            Received::Closed => panic!("the stream closed without a final message"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_streams_end_within_a_second_of_a_revoked_key_or_a_disabled_user() {
    let app = TestApp::spawn().await;
    let client = stream_client();
    // An administrator's stream sees every tenant's events: the worst one to leave open.
    let ada = user(&app, "ada", "admin").await;
    let endpoint = |token: &str| Endpoint {
        base: app.url(""),
        token: token.to_string(),
    };

    // A key, revoked: its SSE and WebSocket streams end.
    let mut sse = SseClient::open(&client, &endpoint(&ada.key), "", None).await;
    let mut ws = WsClient::open(&endpoint(&ada.key), "").await;
    let key_id = &ada.key_id;
    app.send(
        Method::DELETE,
        &format!("/api/v1/keys/{key_id}"),
        None,
        None,
        &[],
    )
    .await
    .expect(202);
    // The second counts from when the feed can deliver the revocation: on this shared
    // test cluster another test's open transaction may hold the feed back a moment.
    app.feed_settled().await;
    let revoked_at = Instant::now();
    let (kind, data, took) = sse_end(&mut sse, revoked_at).await;
    assert_eq!(kind, "revoked", "{data}");
    assert!(data.contains("revoked"), "{data}");
    assert!(
        took < Duration::from_secs(1),
        "the SSE stream took {took:?}"
    );
    loop {
        let message = ws.next(Duration::from_secs(10)).await;
        match message {
            Some(m) if m["type"] == "revoked" => break,
            Some(_) => continue,
            None => panic!("the WebSocket closed without saying why"),
        }
    }
    assert!(
        revoked_at.elapsed() < Duration::from_secs(1),
        "the WebSocket took {:?}",
        revoked_at.elapsed()
    );
    assert!(
        ws.next(Duration::from_secs(5)).await.is_none(),
        "still open"
    );

    // A token of a user who is then disabled: its stream ends too.
    let bo = user(&app, "bo", "operator").await;
    let token = app
        .send(Method::POST, "/api/v1/auth/token", None, Some(&bo.key), &[])
        .await
        .json()["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut sse = SseClient::open(&client, &endpoint(&token), "", None).await;
    app.command(&format!("/api/v1/users/{}/disable", bo.id))
        .await
        .expect(202);
    app.feed_settled().await;
    let disabled_at = Instant::now();
    let (kind, data, took) = sse_end(&mut sse, disabled_at).await;
    assert_eq!(kind, "revoked", "{data}");
    assert!(data.contains("disabled"), "{data}");
    assert!(
        took < Duration::from_secs(1),
        "the SSE stream took {took:?}"
    );
    assert!(matches!(
        sse.next(Duration::from_secs(5)).await,
        Received::Closed
    ));
    app.stop().await;
}

#[tokio::test]
async fn the_last_active_administrator_cannot_be_disabled_and_users_can_be_enabled() {
    let app = TestApp::spawn().await;
    let me = app.get("/api/v1/me").await.json();
    let admin_id = me["id"].as_str().unwrap_or_default().to_string();

    // Alone: refused, and nothing is written.
    let before = app.head().await;
    let refused = app
        .command(&format!("/api/v1/users/{admin_id}/disable"))
        .await;
    refused.expect_problem(409);
    assert!(
        refused.json()["detail"]
            .as_str()
            .is_some_and(|d| d.contains("last active administrator")),
        "{refused}"
    );
    assert_eq!(app.head().await, before);
    app.get("/api/v1/me").await.expect(200);

    // With a second administrator, one may go; then the other is the last one.
    let second = user(&app, "second", "admin").await;
    app.command(&format!("/api/v1/users/{admin_id}/disable"))
        .await
        .expect(202);
    let as_second = |method: Method, path: String| {
        let (app, key) = (&app, second.key.clone());
        async move { app.send_as(&key, method, &path).await }
    };
    as_second(Method::POST, format!("/api/v1/users/{}/disable", second.id))
        .await
        .expect_problem(409);

    // Enabling brings the first back, with its key.
    as_second(Method::POST, format!("/api/v1/users/{admin_id}/enable"))
        .await
        .expect(202);
    app.get("/api/v1/me").await.expect(200);
    as_second(Method::POST, format!("/api/v1/users/{admin_id}/enable"))
        .await
        .expect_problem(409);
    let viewer = user(&app, "vic", "viewer").await;
    app.send_as(
        &viewer.key,
        Method::POST,
        &format!("/api/v1/users/{admin_id}/enable"),
    )
    .await
    .expect_problem(404);
    app.stop().await;
}

/// Two administrators disabling each other at once: one may win, never both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_administrators_disabling_each_other_at_once_leave_one_active() {
    let app = TestApp::spawn().await;
    for round in 0..10 {
        let a = user(&app, &format!("a{round}"), "admin").await;
        let b = user(&app, &format!("b{round}"), "admin").await;
        // Every other administrator steps aside first, so a and b are the only ones.
        let users = app
            .send(Method::GET, "/api/v1/users", None, Some(&a.key), &[])
            .await
            .json();
        let others: Vec<String> = users["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|u| u["role"] == "admin" && u["disabled"] == false)
            .filter_map(|u| u["id"].as_str().map(str::to_string))
            .filter(|id| *id != a.id && *id != b.id)
            .collect();
        for id in &others {
            app.send_as(&a.key, Method::POST, &format!("/api/v1/users/{id}/disable"))
                .await
                .expect(202);
        }
        let (disable_b, disable_a) = (
            format!("/api/v1/users/{}/disable", b.id),
            format!("/api/v1/users/{}/disable", a.id),
        );
        let (one, two) = tokio::join!(
            app.send_as(&a.key, Method::POST, &disable_b),
            app.send_as(&b.key, Method::POST, &disable_a),
        );
        let statuses = [one.status.as_u16(), two.status.as_u16()];
        assert!(
            statuses.contains(&409),
            "round {round}: both administrators were disabled: {statuses:?}"
        );
        let winner = if one.status == 202 { &a } else { &b };
        app.send_as(&winner.key, Method::GET, "/api/v1/me")
            .await
            .expect(200);
        // Hand over to the next round: the winner brings back every administrator
        // disabled in this one.
        let loser = if one.status == 202 { &b } else { &a };
        let disabled = others
            .iter()
            .chain(statuses.contains(&202).then_some(&loser.id));
        for id in disabled {
            app.send_as(
                &winner.key,
                Method::POST,
                &format!("/api/v1/users/{id}/enable"),
            )
            .await
            .expect(202);
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_stream_ends_when_its_token_expires() {
    let app = TestApp::spawn_with(|c| c.token_ttl = Duration::from_secs(2)).await;
    let token = app
        .send(Method::POST, "/api/v1/auth/token", None, None, &[])
        .await
        .json()["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let opened = Instant::now();
    let endpoint = Endpoint {
        base: app.url(""),
        token,
    };
    let mut sse = SseClient::open(&stream_client(), &endpoint, "", None).await;
    let (kind, data, took) = sse_end(&mut sse, opened).await;
    assert_eq!(kind, "revoked", "{data}");
    assert!(data.contains("expired"), "{data}");
    assert!(
        took < Duration::from_secs(4),
        "the stream outlived its token: {took:?}"
    );
    app.stop().await;
}

/// `bob`'s key answers `/me` with `status` within `within`; how long it took.
async fn me_answers(app: &TestApp, key: &str, status: u16, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let answer = app.send_as(key, Method::GET, "/api/v1/me").await;
        if answer.status == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "still {} after {within:?}",
            answer.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_verified_a_moment_ago_stops_within_a_second_when_changed_from_elsewhere() {
    let app = TestApp::spawn().await;
    let bob = user(&app, "bob", "operator").await;
    let spare = user(&app, "eve", "operator").await;
    // Verified, and so kept: these now cost no query.
    for key in [&bob.key, &spare.key] {
        for _ in 0..3 {
            assert_eq!(
                app.send_as(key, Method::GET, "/api/v1/me").await.status,
                200
            );
        }
    }
    // The command line, beside the running Berth, changes what the API's cache holds.
    let settings = berth_api::cli::config::Settings {
        data_dir: app.data_dir().to_owned(),
        database_url: Some(app.db.url()),
        ..Default::default()
    };
    berth_api::cli::users::disable(&settings, "bob")
        .await
        .expect("disabling bob");
    let took = me_answers(&app, &bob.key, 401, Duration::from_secs(1)).await;
    eprintln!("a disabled user's key stopped after {took:?}");
    berth_api::cli::users::revoke_key(&settings, spare.key_id.parse().expect("a key id"))
        .await
        .expect("revoking eve's key");
    me_answers(&app, &spare.key, 401, Duration::from_secs(1)).await;
    // Enabled again: the key works again, no stale refusal kept either.
    berth_api::cli::users::enable(&settings, "bob")
        .await
        .expect("enabling bob");
    me_answers(&app, &bob.key, 200, Duration::from_secs(1)).await;
    app.stop().await;
}
