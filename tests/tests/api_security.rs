//! Identity and tenant isolation through the real HTTP stack: every endpoint × every
//! role × own/other's resource answers the expected status; nothing of another user
//! leaks in lists, streams or exports; expired, revoked and forged tokens are refused;
//! and every security action is in the audit log without key material.

mod api_support;
mod live_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api_support::{fixture_entry, server_body, user, Caller, TestApp};
use berth_application::servers::NewServer;
use berth_application::{Actor, CommandBus, CommandMetadata};
use berth_domain::server::RestartPolicy;
use berth_infrastructure::cipher::{MasterKey, MasterKeyCipher};
use berth_infrastructure::db::Database;
use berth_infrastructure::envelope::EnvelopeCipher;
use berth_infrastructure::event_store::PostgresEventRepository;
use live_support::{stream_client, Endpoint, Received, SseClient};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

async fn call(app: &TestApp, who: &str, method: Method, path: &str, body: Option<&Value>) -> u16 {
    let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
    let answer = app.send(method, path, bytes, Some(who), &[]).await;
    assert!(
        !answer.status.is_server_error(),
        "{path} answered {answer:?}"
    );
    answer.status.as_u16()
}

/// Creates a server owned by `owner` directly through the command bus: a viewer cannot
/// create servers, yet may own some (made for them), and must see them and only them.
async fn server_owned_by(app: &TestApp, owner: &str, catalog_id: &str) -> String {
    let pool = Database::from_url(&app.db.url())
        .and_then(|db| db.pool(2))
        .unwrap_or_else(|e| panic!("pool: {e}"));
    let cipher = EnvelopeCipher::new(pool.clone(), MasterKeyCipher::new(MasterKey::generate()));
    let bus = CommandBus::new(PostgresEventRepository::new(pool.clone()), Arc::new(cipher));
    let new = NewServer {
        catalog_id: catalog_id.parse().expect("a catalog entry id"),
        name: format!("{owner}-server"),
        config: BTreeMap::new(),
        secrets: BTreeMap::new(),
        restart_policy: RestartPolicy::Never,
    };
    let metadata = CommandMetadata::new(Actor::User(owner.into()));
    let (id, _) = bus
        .create_server(&metadata, new)
        .await
        .unwrap_or_else(|e| panic!("creating a server for {owner}: {e}"));
    pool.close();
    id.to_string()
}

fn plain_entry(name: &str) -> Value {
    json!({
        "name": name,
        "description": "no config at all",
        "transport": "stdio",
        "runtime": {"type": "docker", "image": "berth/fixture:latest"},
        "config_schema": [],
        "resources": {}
    })
}

/// What a caller may do with a server: the expected status for a read and an action.
#[derive(Clone, Copy, Debug)]
enum Access {
    /// Its own (or an administrator): allowed.
    Allowed,
    /// Visible but its role may not act: 403 on actions, allowed reads.
    ReadOnly,
    /// Not visible: 404 on everything.
    Hidden,
}

#[tokio::test]
async fn every_endpoint_answers_each_role_on_own_and_others_resources() {
    let app = TestApp::spawn().await;
    let admin = app.token().to_string();
    let ann = user(&app, "ann", "operator").await;
    let bob = user(&app, "bob", "operator").await;
    let vic = user(&app, "vic", "viewer").await;

    // The fixture entry, published for everyone by the administrator.
    let shared = app.register_fixture("shared").await.json()["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        call(
            &app,
            &admin,
            Method::POST,
            &format!("/api/v1/catalog/{shared}/publish"),
            None
        )
        .await,
        202
    );
    let plain = app
        .post("/api/v1/catalog", &plain_entry("plain"))
        .await
        .json()["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    call(
        &app,
        &admin,
        Method::POST,
        &format!("/api/v1/catalog/{plain}/publish"),
        None,
    )
    .await;

    // Servers of ann and bob (made through the API with their own keys), and of vic.
    let mut servers = BTreeMap::new();
    for who in [&ann, &bob] {
        let answer = app
            .send(
                Method::POST,
                "/api/v1/servers",
                Some(
                    serde_json::to_vec(&server_body(
                        &shared,
                        &format!("{}-srv", who.name),
                        "s3cr3t-of-{}",
                    ))
                    .unwrap_or_default(),
                ),
                Some(&who.key),
                &[],
            )
            .await;
        assert_eq!(answer.status, 201, "{answer:?}");
        servers.insert(
            who.name.clone(),
            answer.json()["id"].as_str().unwrap_or_default().to_string(),
        );
    }
    servers.insert("vic".into(), server_owned_by(&app, "vic", &plain).await);
    app.feed_settled().await;
    // Readable by the feed is not yet applied by the projector: wait for the row.
    let sql = app.sql().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let owner = loop {
        let owner = sql
            .query_opt(
                "SELECT owner FROM servers WHERE id = $1::text::uuid",
                &[&servers["ann"]],
            )
            .await
            .ok()
            .flatten()
            .map(|r| r.get::<_, String>(0));
        if owner.is_some() || std::time::Instant::now() > deadline {
            break owner;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        owner,
        Some("user:ann".to_string()),
        "the servers read model records the owner"
    );

    // Who may do what to whose server.
    let cases: Vec<(&str, &str, &str, Access)> = vec![
        ("admin", &admin, "ann", Access::Allowed),
        ("ann", &ann.key, "ann", Access::Allowed),
        ("ann", &ann.key, "bob", Access::Hidden),
        ("ann", &ann.key, "vic", Access::Hidden),
        ("vic", &vic.key, "vic", Access::ReadOnly),
        ("vic", &vic.key, "ann", Access::Hidden),
        ("bob", &bob.key, "ann", Access::Hidden),
    ];
    let reads = ["", "/events", "/logs?tail=5"];
    let actions: [(Method, &str, Option<Value>); 7] = [
        (
            Method::PATCH,
            "",
            Some(json!({"config": {"API_URL": "https://changed.test"}})),
        ),
        (Method::POST, "/enable", None),
        (Method::POST, "/disable", None),
        (Method::POST, "/start", None),
        (Method::POST, "/stop", None),
        (Method::POST, "/restart", None),
        (Method::POST, "/test", None),
    ];
    for (who, key, target, access) in &cases {
        let id = &servers[*target];
        for read in reads {
            let status = call(
                &app,
                key,
                Method::GET,
                &format!("/api/v1/servers/{id}{read}"),
                None,
            )
            .await;
            match access {
                Access::Hidden => assert_eq!(status, 404, "{who} GET {target}{read}"),
                // Logs of a server that never ran may answer what the runtime says,
                // but never what a hidden server answers (404) or a refusal (403).
                _ => assert!(
                    status == 200 || (read.starts_with("/logs") && ![403, 404].contains(&status)),
                    "{who} GET {target}{read} → {status}"
                ),
            }
        }
        for (method, suffix, body) in &actions {
            let path = format!("/api/v1/servers/{id}{suffix}");
            let status = call(&app, key, method.clone(), &path, body.as_ref()).await;
            match access {
                Access::Hidden => assert_eq!(status, 404, "{who} {method} {target}{suffix}"),
                Access::ReadOnly => assert_eq!(status, 403, "{who} {method} {target}{suffix}"),
                Access::Allowed => assert!(
                    ![401, 403, 404].contains(&status),
                    "{who} {method} {target}{suffix} → {status}"
                ),
            }
        }
        let delete = format!("/api/v1/servers/{id}");
        if !matches!(access, Access::Allowed) {
            let expected = if matches!(access, Access::Hidden) {
                404
            } else {
                403
            };
            assert_eq!(
                call(&app, key, Method::DELETE, &delete, None).await,
                expected,
                "{who} DELETE {target}"
            );
        }
    }

    // Creating servers: viewers may not; nobody may use another's private entry.
    let private = app
        .send(
            Method::POST,
            "/api/v1/catalog",
            Some(serde_json::to_vec(&fixture_entry("anns-own")).unwrap_or_default()),
            Some(&ann.key),
            &[],
        )
        .await;
    assert_eq!(
        private.status, 201,
        "an operator adds a custom entry: {private:?}"
    );
    let private = private.json()["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let body = server_body(&shared, "vics", "x");
    assert_eq!(
        call(&app, &vic.key, Method::POST, "/api/v1/servers", Some(&body)).await,
        403
    );
    assert_eq!(
        call(
            &app,
            &vic.key,
            Method::POST,
            "/api/v1/catalog",
            Some(&fixture_entry("v"))
        )
        .await,
        403
    );
    let on_private = server_body(&private, "bobs", "x");
    assert_eq!(
        call(
            &app,
            &bob.key,
            Method::POST,
            "/api/v1/servers",
            Some(&on_private)
        )
        .await,
        422
    );
    assert_eq!(
        call(
            &app,
            &ann.key,
            Method::POST,
            "/api/v1/servers",
            Some(&on_private)
        )
        .await,
        201
    );

    // Catalog: private entries are the owner's; others' and predefined ones are read-only.
    let predefined = app.get("/api/v1/catalog?kind=predefined").await.json()["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let entry = |id: &str| format!("/api/v1/catalog/{id}");
    let update = fixture_entry("renamed");
    for (who, key, id, get, put, publish) in [
        ("ann", &ann.key, &private, 200, 202, 403),
        ("bob", &bob.key, &private, 404, 404, 404),
        ("vic", &vic.key, &private, 404, 404, 404),
        ("admin", &admin, &private, 200, 202, 202),
        ("ann", &ann.key, &shared, 200, 403, 403),
        ("vic", &vic.key, &shared, 200, 403, 403),
        ("ann", &ann.key, &predefined, 200, 403, 403),
    ] {
        assert_eq!(
            call(&app, key, Method::GET, &entry(id), None).await,
            get,
            "{who} GET entry"
        );
        assert_eq!(
            call(&app, key, Method::PUT, &entry(id), Some(&update)).await,
            put,
            "{who} PUT entry"
        );
        assert_eq!(
            call(
                &app,
                key,
                Method::POST,
                &format!("{}/publish", entry(id)),
                None
            )
            .await,
            // Publishing twice is a conflict once the administrator did it.
            if who == "admin" { 202 } else { publish },
            "{who} publish entry"
        );
    }
    // Published by the administrator above: now everyone sees it, still only its owner
    // (and administrators) change it.
    let settled = |id: &str, head: i64| format!("/api/v1/catalog/{id}?min_position={head}");
    let head = app.head().await;
    assert_eq!(
        call(&app, &vic.key, Method::GET, &settled(&private, head), None).await,
        200
    );
    assert_eq!(
        call(&app, &bob.key, Method::DELETE, &entry(&private), None).await,
        403
    );
    assert_eq!(
        call(
            &app,
            &admin,
            Method::POST,
            &format!("{}/unpublish", entry(&private)),
            None
        )
        .await,
        202
    );
    let head = app.head().await;
    assert_eq!(
        call(&app, &vic.key, Method::GET, &settled(&private, head), None).await,
        404
    );
    assert_eq!(
        call(&app, &admin, Method::DELETE, &entry(&predefined), None).await,
        409
    );

    // Bulk operations: only one's own servers; others' read like unknown ones.
    let bulk = |ids: Vec<&String>| json!({"operation": "disable", "server_ids": ids});
    assert_eq!(
        call(
            &app,
            &ann.key,
            Method::POST,
            "/api/v1/bulk",
            Some(&bulk(vec![&servers["bob"]]))
        )
        .await,
        422
    );
    assert_eq!(
        call(
            &app,
            &vic.key,
            Method::POST,
            "/api/v1/bulk",
            Some(&bulk(vec![&servers["vic"]]))
        )
        .await,
        403
    );
    let begun = app
        .send(
            Method::POST,
            "/api/v1/bulk",
            Some(serde_json::to_vec(&bulk(vec![&servers["ann"]])).unwrap_or_default()),
            Some(&ann.key),
            &[],
        )
        .await;
    assert_eq!(begun.status, 202, "{begun:?}");
    let bulk_id = begun.json()["id"].as_str().unwrap_or_default().to_string();
    let bulk_path = format!("/api/v1/bulk/{bulk_id}");
    for (who, key, expected) in [
        ("ann", &ann.key, 200),
        ("admin", &admin, 200),
        ("bob", &bob.key, 404),
        ("vic", &vic.key, 404),
    ] {
        let mut status = call(&app, key, Method::GET, &bulk_path, None).await;
        for _ in 0..50 {
            if status != 404 || expected == 404 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            status = call(&app, key, Method::GET, &bulk_path, None).await;
        }
        assert_eq!(status, expected, "{who} GET bulk");
    }

    // Identity: administrators manage users; everyone manages their own keys only.
    let user_path = |c: &Caller, suffix: &str| format!("/api/v1/users/{}{suffix}", c.id);
    let new_user = json!({"name": "eve", "role": "viewer"});
    assert_eq!(
        call(
            &app,
            &ann.key,
            Method::POST,
            "/api/v1/users",
            Some(&new_user)
        )
        .await,
        403
    );
    assert_eq!(
        call(&app, &vic.key, Method::GET, "/api/v1/users", None).await,
        403
    );
    assert_eq!(
        call(&app, &admin, Method::GET, "/api/v1/users", None).await,
        200
    );
    assert_eq!(
        call(
            &app,
            &ann.key,
            Method::POST,
            &user_path(&bob, "/disable"),
            None
        )
        .await,
        404
    );
    assert_eq!(
        call(
            &app,
            &ann.key,
            Method::POST,
            &user_path(&ann, "/disable"),
            None
        )
        .await,
        403
    );
    let key_body = json!({"name": "second"});
    assert_eq!(
        call(
            &app,
            &vic.key,
            Method::POST,
            &user_path(&ann, "/keys"),
            Some(&key_body)
        )
        .await,
        404
    );
    assert_eq!(
        call(&app, &vic.key, Method::GET, &user_path(&ann, "/keys"), None).await,
        404
    );
    assert_eq!(
        call(&app, &ann.key, Method::GET, &user_path(&ann, "/keys"), None).await,
        200
    );
    let second = app
        .send(
            Method::POST,
            &user_path(&ann, "/keys"),
            Some(serde_json::to_vec(&key_body).unwrap_or_default()),
            Some(&ann.key),
            &[],
        )
        .await;
    assert_eq!(second.status, 201, "a user creates a key for themself");
    let second_id = second.json()["id"].as_str().unwrap_or_default().to_string();
    let revoke = format!("/api/v1/keys/{second_id}");
    assert_eq!(
        call(&app, &vic.key, Method::DELETE, &revoke, None).await,
        404
    );
    assert_eq!(
        call(&app, &bob.key, Method::DELETE, &revoke, None).await,
        404
    );
    assert_eq!(
        call(&app, &ann.key, Method::DELETE, &revoke, None).await,
        202
    );
    for (caller, role) in [(&ann, "operator"), (&vic, "viewer")] {
        let me = app
            .send(Method::GET, "/api/v1/me", None, Some(&caller.key), &[])
            .await;
        assert_eq!(
            (me.json()["name"].as_str(), me.json()["role"].as_str()),
            (Some(caller.name.as_str()), Some(role))
        );
    }

    // Nothing of bob's leaks to ann or vic in lists, the event log, audit or exports.
    app.feed_settled().await;
    let position = app.head().await;
    let bob_server = &servers["bob"];
    for (who, key) in [("ann", &ann.key), ("vic", &vic.key)] {
        for path in [
            "/api/v1/servers?page_size=500".to_string(),
            "/api/v1/events?limit=1000".to_string(),
            format!("/api/v1/audit?page_size=500&min_position={position}"),
            format!("/api/v1/audit/export?format=jsonl&min_position={position}"),
            format!("/api/v1/audit/export?format=csv&min_position={position}"),
            "/api/v1/catalog?page_size=500".to_string(),
        ] {
            let answer = app.send(Method::GET, &path, None, Some(key), &[]).await;
            assert_eq!(answer.status, StatusCode::OK, "{who} {path}");
            let text = String::from_utf8_lossy(&answer.body);
            assert!(
                !text.contains(bob_server.as_str()),
                "{who} sees bob's server in {path}"
            );
            assert!(!text.contains("user:bob"), "{who} sees bob in {path}");
            assert!(
                !text.contains(&private) || who == "ann",
                "{who} sees ann's private entry in {path}"
            );
        }
    }
    let ann_events = app
        .send(
            Method::GET,
            "/api/v1/events?limit=1000",
            None,
            Some(&ann.key),
            &[],
        )
        .await
        .json();
    let ann_events = ann_events["events"].as_array().cloned().unwrap_or_default();
    assert!(ann_events
        .iter()
        .any(|e| e["aggregate_id"] == servers["ann"].as_str()));
    let vic_servers = app
        .send(Method::GET, "/api/v1/servers", None, Some(&vic.key), &[])
        .await
        .json();
    let listed: Vec<&str> = vic_servers["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        listed,
        [servers["vic"].as_str()],
        "a viewer lists exactly its own servers"
    );

    // The live stream: ann's subscription from the start carries only ann's streams.
    let client = stream_client();
    let endpoint = Endpoint {
        base: app.url(""),
        token: ann.key.clone(),
    };
    let mut stream = SseClient::open(&client, &endpoint, "after=0", None).await;
    let mut seen = 0;
    while let Some(Received::Event(event)) = stream.poll(Duration::from_secs(2)).await {
        seen += 1;
        let text = event.to_string();
        assert!(
            !text.contains(bob_server.as_str()) && !text.contains("user:bob"),
            "ann's stream leaked {text}"
        );
    }
    assert!(
        seen >= ann_events.len(),
        "the stream replayed ann's events ({seen})"
    );
    // A new event of bob's does not reach ann; one of ann's does.
    assert_eq!(
        call(
            &app,
            &bob.key,
            Method::POST,
            &format!("/api/v1/servers/{bob_server}/disable"),
            None
        )
        .await,
        202
    );
    assert_eq!(
        call(
            &app,
            &ann.key,
            Method::POST,
            &format!("/api/v1/servers/{}/enable", servers["ann"]),
            None
        )
        .await,
        202
    );
    match stream.poll(Duration::from_secs(10)).await {
        Some(Received::Event(event)) => assert_eq!(event["aggregate_id"], servers["ann"].as_str()),
        other => panic!("expected ann's event, got {other:?}"),
    }

    // Finally the administrator deletes ann's server; nobody else could.
    assert_eq!(
        call(
            &app,
            &admin,
            Method::DELETE,
            &format!("/api/v1/servers/{}", servers["ann"]),
            None
        )
        .await,
        202
    );
    app.stop().await;
}

#[tokio::test]
async fn expired_revoked_disabled_and_forged_credentials_are_refused() {
    let app = TestApp::spawn_with(|c| c.token_ttl = Duration::from_secs(2)).await;
    let ann = user(&app, "ann", "operator").await;
    let me = |token: String| {
        let app = &app;
        async move {
            app.send(Method::GET, "/api/v1/me", None, Some(&token), &[])
                .await
        }
    };

    // A token for a key works like the key, and says so.
    let issued = app
        .send(
            Method::POST,
            "/api/v1/auth/token",
            None,
            Some(&ann.key),
            &[],
        )
        .await;
    assert_eq!(issued.status, 200, "{issued:?}");
    let token = issued.json()["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let answer = me(token.clone()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["credential"], "token");
    assert_eq!(answer.json()["role"], "operator");
    // A token does not buy another token (lifetimes stay bounded by the key).
    assert_eq!(
        app.send(Method::POST, "/api/v1/auth/token", None, Some(&token), &[])
            .await
            .status,
        403
    );

    // Forged: the payload changed to admin with the old signature; `alg: none`; garbage.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let claims = base64_url_decode(parts[1]);
    let mut forged_claims: Value = serde_json::from_slice(&claims).unwrap_or_default();
    forged_claims["role"] = json!("admin");
    let forged_payload = base64_url_encode(&serde_json::to_vec(&forged_claims).unwrap_or_default());
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    let none = format!(
        "{}.{forged_payload}.",
        base64_url_encode(br#"{"alg":"none","typ":"JWT"}"#)
    );
    for bad in [
        forged,
        none,
        "a.b.c".to_string(),
        format!("{token}x"),
        "berth_0000000000000000".to_string(),
        format!("{}0", ann.key),
    ] {
        let answer = me(bad.clone()).await;
        assert_eq!(answer.status, 401, "{bad} was accepted: {answer:?}");
        assert_eq!(answer.json()["type"], "urn:berth:problem:unauthorized");
    }
    let forged_admin = app
        .send(
            Method::GET,
            "/api/v1/users",
            None,
            Some(&format!("{}.{forged_payload}.{}", parts[0], parts[2])),
            &[],
        )
        .await;
    assert_eq!(forged_admin.status, 401);

    // Expired: the token lives 2 s here; `exp` is in whole seconds and the token holds
    // through that second, so after 3.5 s it has expired whatever the issue time's fraction.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let answer = me(token).await;
    assert_eq!(answer.status, 401);
    assert!(answer.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("expired"));

    // A key with an expiry works until then.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let short = app
        .send(
            Method::POST,
            &format!("/api/v1/users/{}/keys", ann.id),
            Some(
                serde_json::to_vec(&json!({"name": "short", "expires_at": soon}))
                    .unwrap_or_default(),
            ),
            Some(&ann.key),
            &[],
        )
        .await;
    assert_eq!(short.status, 201, "{short:?}");
    let short_key = short.json()["key"].as_str().unwrap_or_default().to_string();
    assert_eq!(me(short_key.clone()).await.status, 200);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(me(short_key.clone()).await.status, 401);
    assert_eq!(
        app.send(
            Method::POST,
            "/api/v1/auth/token",
            None,
            Some(&short_key),
            &[]
        )
        .await
        .status,
        401
    );
    let past = app
        .send(
            Method::POST,
            &format!("/api/v1/users/{}/keys", ann.id),
            Some(
                serde_json::to_vec(&json!({"name": "past", "expires_at": "2000-01-01T00:00:00Z"}))
                    .unwrap_or_default(),
            ),
            Some(&ann.key),
            &[],
        )
        .await;
    assert_eq!(past.status, 422);
    assert_eq!(past.json()["errors"][0]["field"], "expires_at");

    // Revoked: stops working the moment the answer arrives, for keys and new tokens.
    let spare = app
        .send(
            Method::POST,
            &format!("/api/v1/users/{}/keys", ann.id),
            Some(serde_json::to_vec(&json!({"name": "spare"})).unwrap_or_default()),
            Some(&ann.key),
            &[],
        )
        .await
        .json();
    let spare_key = spare["key"].as_str().unwrap_or_default().to_string();
    assert_eq!(me(spare_key.clone()).await.status, 200);
    let revoked = app
        .send(
            Method::DELETE,
            &format!("/api/v1/keys/{}", spare["id"].as_str().unwrap_or_default()),
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(revoked.status, 202);
    assert_eq!(me(spare_key.clone()).await.status, 401);
    assert_eq!(
        app.send(
            Method::POST,
            "/api/v1/auth/token",
            None,
            Some(&spare_key),
            &[]
        )
        .await
        .status,
        401
    );

    // Disabled: the user's keys stop at once.
    assert_eq!(
        app.command(&format!("/api/v1/users/{}/disable", ann.id))
            .await
            .status,
        202
    );
    assert_eq!(me(ann.key.clone()).await.status, 401);
    assert_eq!(
        app.command(&format!("/api/v1/users/{}/disable", ann.id))
            .await
            .status,
        409
    );

    // Every security action is an event in the audit log, with its actor, and no key
    // material: neither keys nor their hashes appear anywhere an auditor reads.
    app.feed_settled().await;
    let position = app.head().await;
    let audit = app
        .get(&format!(
            "/api/v1/audit?page_size=500&min_position={position}"
        ))
        .await;
    let actions: Vec<String> = audit.json()["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["action"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for action in [
        "user.created",
        "user.key_created",
        "user.token_issued",
        "user.key_revoked",
        "user.disabled",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} missing from {actions:?}"
        );
    }
    let export = app
        .get(&format!(
            "/api/v1/audit/export?format=jsonl&min_position={position}"
        ))
        .await;
    let hashes: Vec<String> = app
        .sql()
        .await
        .query("SELECT hash FROM api_keys", &[])
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default();
    assert!(!hashes.is_empty());
    for text in [
        String::from_utf8_lossy(&audit.body),
        String::from_utf8_lossy(&export.body),
    ] {
        for secret in [&ann.key, &short_key, &spare_key] {
            assert!(!text.contains(secret.as_str()), "a key is in the audit log");
        }
        for hash in &hashes {
            assert!(
                !text.contains(hash.as_str()),
                "a key hash is in the audit log"
            );
        }
    }
    // The key itself is nowhere in the database either.
    let dump = app
        .sql()
        .await
        .query_one(
            "SELECT string_agg(payload::text || metadata::text, '') FROM events",
            &[],
        )
        .await
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
        .unwrap_or_default();
    for secret in [&ann.key, &short_key, &spare_key] {
        assert!(!dump.contains(secret.as_str()));
    }
    app.stop().await;
}

#[tokio::test]
async fn the_bootstrap_key_is_an_admin_key_and_revoking_it_survives_a_restart() {
    let mut app = TestApp::spawn().await;
    let me = app.get("/api/v1/me").await.json();
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("admin"), Some("admin"))
    );
    let admin_id = me["id"].as_str().unwrap_or_default().to_string();
    // A second administrator key, then the bootstrap key revoked with it.
    let second = app
        .post(
            &format!("/api/v1/users/{admin_id}/keys"),
            &json!({"name": "ops"}),
        )
        .await
        .json();
    let second_key = second["key"].as_str().unwrap_or_default().to_string();
    let bootstrap_id = me["key_id"].as_str().unwrap_or_default().to_string();
    let revoked = app
        .send(
            Method::DELETE,
            &format!("/api/v1/keys/{bootstrap_id}"),
            None,
            Some(&second_key),
            &[],
        )
        .await;
    assert_eq!(revoked.status, 202);
    assert_eq!(app.get("/api/v1/me").await.status, 401);
    app.restart().await;
    assert_eq!(
        app.get("/api/v1/me").await.status,
        401,
        "a restart must not bring the revoked key back"
    );
    let answer = app
        .send(Method::GET, "/api/v1/users", None, Some(&second_key), &[])
        .await;
    assert_eq!(answer.status, 200);
    let unique: Vec<Uuid> = answer.json()["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u["id"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        unique.len(),
        1,
        "exactly one user, the bootstrap administrator"
    );
    app.stop().await;
}

fn base64_url_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap_or_default()
}

fn base64_url_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
