//! The servers projection: lifecycle, config, masked secrets, deletion, filters.

use std::collections::BTreeMap;

use berth_application::servers::{LifecycleAction, ServerConfigPatch};
use berth_domain::server::{Health, ServerCommand, Tool};
use berth_projections::{get_server, list_servers, ServerFilter, ServerView};
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use crate::kit::{definition, meta, page, system, Harness};

const TOKEN: &str = "ghp_plaintext_token_value";
const WEBHOOK: &str = "whsec_plaintext_webhook_value";

async fn view(h: &Harness, id: Uuid) -> Option<ServerView> {
    h.catch_up().await;
    get_server(&h.client().await, id).await.unwrap()
}

async fn runtime(h: &Harness, id: Uuid, command: ServerCommand) {
    h.bus
        .server(id.into(), command, &system(None, None))
        .await
        .unwrap();
}

async fn act(h: &Harness, id: Uuid, action: LifecycleAction) {
    h.bus
        .server_lifecycle(&meta("ann"), id.into(), action)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_is_followed_from_creation_to_deletion() {
    let h = Harness::new().await;
    let catalog = h.register("ann", definition("github", "")).await;
    let (id, created_at) = h
        .create_server(
            "ann",
            catalog,
            "github-prod",
            &[("ORG", "acme")],
            &[("TOKEN", TOKEN)],
        )
        .await;

    let v = view(&h, id).await.expect("created");
    assert_eq!(v.name, "github-prod");
    assert_eq!(v.catalog_id, catalog);
    assert_eq!(v.catalog_version, 1);
    assert_eq!(v.owner, "user:ann");
    assert_eq!(v.state, "stopped");
    assert!(v.enabled);
    assert_eq!(v.config, json!({ "ORG": "acme" }));
    assert_eq!(v.secrets, json!({ "TOKEN": "********" }));
    assert_eq!(v.health, "unknown");
    assert_eq!(v.tools, json!([]));
    assert_eq!((v.version, v.position), (1, created_at));
    assert_eq!(v.created_at, v.updated_at);

    act(&h, id, LifecycleAction::Start).await;
    assert_eq!(view(&h, id).await.unwrap().state, "pending");
    runtime(&h, id, ServerCommand::BeginProvisioning).await;
    assert_eq!(view(&h, id).await.unwrap().state, "creating");
    let container_id = "c0ffee".to_string();
    runtime(
        &h,
        id,
        ServerCommand::RecordContainerCreated {
            container_id,
            node: "n1".into(),
        },
    )
    .await;
    let v = view(&h, id).await.unwrap();
    assert_eq!(
        (v.state.as_str(), v.container_id.as_deref()),
        ("starting", Some("c0ffee"))
    );
    runtime(
        &h,
        id,
        ServerCommand::RecordRunning {
            tools: vec![],
            endpoint: Some("http://127.0.0.1:5000/mcp".into()),
        },
    )
    .await;
    runtime(
        &h,
        id,
        ServerCommand::RecordHealth {
            health: Health::Healthy,
        },
    )
    .await;
    let tools = vec![Tool {
        name: "search".into(),
        description: Some("Searches code".into()),
        input_schema: Some(
            serde_json::json!({"type": "object", "properties": {"text": {"type": "string"}}}),
        ),
    }];
    runtime(&h, id, ServerCommand::RecordTools { tools }).await;
    let v = view(&h, id).await.unwrap();
    assert_eq!(v.state, "running");
    assert_eq!(v.health, "healthy");
    assert_eq!(
        v.tools,
        json!([{ "name": "search", "description": "Searches code",
                 "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}} }])
    );
    assert_eq!(v.endpoint.as_deref(), Some("http://127.0.0.1:5000/mcp"));
    assert_eq!(v.version, 8);

    act(&h, id, LifecycleAction::Stop).await;
    assert_eq!(view(&h, id).await.unwrap().state, "stopping");
    runtime(&h, id, ServerCommand::RecordStopped).await;
    let v = view(&h, id).await.unwrap();
    assert_eq!(v.state, "stopped");
    assert_eq!(v.container_id, None);
    assert_eq!(v.endpoint, None);
    assert_eq!(v.health, "unknown");

    let patch = ServerConfigPatch {
        config: BTreeMap::from([
            ("ORG".to_string(), Some("globex".to_string())),
            ("LEVEL".to_string(), Some("debug".to_string())),
        ]),
        secrets: BTreeMap::from([
            (
                "TOKEN".to_string(),
                Some(SecretString::from(format!("{TOKEN}-2"))),
            ),
            (
                "WEBHOOK_SECRET".to_string(),
                Some(SecretString::from(WEBHOOK.to_string())),
            ),
        ]),
        restart_policy: None,
    };
    let receipt = h
        .bus
        .update_server_config(&meta("ann"), id.into(), patch)
        .await
        .unwrap();
    let v = view(&h, id).await.unwrap();
    assert_eq!(v.config, json!({ "LEVEL": "debug", "ORG": "globex" }));
    assert_eq!(
        v.secrets,
        json!({ "TOKEN": "********", "WEBHOOK_SECRET": "********" })
    );
    assert_eq!(Some(v.position), receipt.position);
    assert!(v.updated_at >= v.created_at);

    act(&h, id, LifecycleAction::Disable).await;
    assert!(!view(&h, id).await.unwrap().enabled);
    act(&h, id, LifecycleAction::Enable).await;
    assert!(view(&h, id).await.unwrap().enabled);

    act(&h, id, LifecycleAction::Delete).await;
    assert!(view(&h, id).await.is_none());
    let all = list_servers(&h.client().await, &ServerFilter::default(), page(1, 50))
        .await
        .unwrap();
    assert_eq!(all.total, 0);
}

#[tokio::test]
async fn failures_restarts_and_deletion_while_running_are_shown() {
    let h = Harness::new().await;
    let catalog = h.register("ann", definition("github", "")).await;
    let (id, _) = h
        .create_server(
            "ann",
            catalog,
            "flaky",
            &[("ORG", "acme")],
            &[("TOKEN", TOKEN)],
        )
        .await;
    act(&h, id, LifecycleAction::Start).await;
    runtime(&h, id, ServerCommand::BeginProvisioning).await;
    let reason = "image ghcr.io/berth/fixture:1 not found".to_string();
    runtime(&h, id, ServerCommand::RecordFailed { reason }).await;
    let v = view(&h, id).await.unwrap();
    assert_eq!(v.state, "failed");
    assert_eq!(
        v.last_error.as_deref(),
        Some("image ghcr.io/berth/fixture:1 not found")
    );

    act(&h, id, LifecycleAction::Start).await;
    runtime(&h, id, ServerCommand::BeginProvisioning).await;
    let container_id = "abc".to_string();
    runtime(
        &h,
        id,
        ServerCommand::RecordContainerCreated {
            container_id,
            node: "n1".into(),
        },
    )
    .await;
    runtime(
        &h,
        id,
        ServerCommand::RecordRunning {
            tools: vec![],
            endpoint: None,
        },
    )
    .await;
    let v = view(&h, id).await.unwrap();
    assert_eq!((v.state.as_str(), v.last_error), ("running", None));

    act(&h, id, LifecycleAction::Restart).await;
    let v = view(&h, id).await.unwrap();
    assert_eq!(v.state, "stopping");
    assert!(v.restart_pending);
    runtime(&h, id, ServerCommand::RecordStopped).await;
    let v = view(&h, id).await.unwrap();
    assert_eq!(v.state, "pending");
    assert!(!v.restart_pending);

    act(&h, id, LifecycleAction::Delete).await;
    let v = view(&h, id).await.unwrap();
    assert_eq!(v.state, "stopping");
    assert!(v.delete_pending);
    runtime(&h, id, ServerCommand::RecordStopped).await;
    assert!(view(&h, id).await.is_none());
}

#[tokio::test]
async fn lists_filter_by_state_catalog_owner_and_name() {
    let h = Harness::new().await;
    let github = h.register("ann", definition("github", "")).await;
    let gitlab = h.register("ann", definition("gitlab", "")).await;
    let config = [("ORG", "acme")];
    let secrets = [("TOKEN", TOKEN)];
    let (prod, _) = h
        .create_server("ann", github, "github-prod", &config, &secrets)
        .await;
    h.create_server("ann", github, "github-dev", &config, &secrets)
        .await;
    h.create_server("bob", gitlab, "gitlab_1", &config, &secrets)
        .await;
    h.create_server("bob", gitlab, "gitlabx1", &config, &secrets)
        .await;
    act(&h, prod, LifecycleAction::Start).await;
    h.catch_up().await;
    let client = h.client().await;
    let names = |filter: ServerFilter| {
        let client = &client;
        async move {
            let p = list_servers(client, &filter, page(1, 50)).await.unwrap();
            assert_eq!(usize::try_from(p.total).unwrap(), p.items.len());
            p.items.into_iter().map(|s| s.name).collect::<Vec<_>>()
        }
    };

    assert_eq!(
        names(ServerFilter::default()).await,
        ["github-dev", "github-prod", "gitlab_1", "gitlabx1"]
    );
    let pending = ServerFilter {
        state: Some("pending".into()),
        ..Default::default()
    };
    assert_eq!(names(pending).await, ["github-prod"]);
    let of_gitlab = ServerFilter {
        catalog_id: Some(gitlab),
        ..Default::default()
    };
    assert_eq!(names(of_gitlab).await, ["gitlab_1", "gitlabx1"]);
    let of_ann = ServerFilter {
        owner: Some("user:ann".into()),
        ..Default::default()
    };
    assert_eq!(names(of_ann).await, ["github-dev", "github-prod"]);
    let search = ServerFilter {
        q: Some("PROD".into()),
        ..Default::default()
    };
    assert_eq!(names(search).await, ["github-prod"]);
    let literal = ServerFilter {
        q: Some("b_1".into()),
        ..Default::default()
    };
    assert_eq!(names(literal).await, ["gitlab_1"]);
    let none = ServerFilter {
        state: Some("stopped".into()),
        owner: Some("user:bob".into()),
        catalog_id: Some(github),
        q: None,
    };
    assert!(names(none).await.is_empty());
}

/// Every sealed value (ciphertext and nonce) and every plaintext secret the store holds.
async fn secret_material(h: &Harness) -> Vec<String> {
    let rows = h
        .client()
        .await
        .query(
            "SELECT s.value->>'ciphertext', s.value->>'nonce' FROM events e, \
             jsonb_each(e.payload->'secrets') s WHERE e.payload ? 'secrets'",
            &[],
        )
        .await
        .unwrap();
    let mut found: Vec<String> = rows
        .iter()
        .flat_map(|r| [r.get::<_, String>(0), r.get::<_, String>(1)])
        .collect();
    assert!(
        found.len() >= 6,
        "the events hold sealed secrets: {found:?}"
    );
    found.extend([TOKEN.to_string(), WEBHOOK.to_string()]);
    found
}

#[tokio::test]
async fn no_secret_reaches_any_read_model() {
    let h = Harness::new().await;
    let catalog = h.register("ann", definition("github", "")).await;
    let (id, _) = h
        .create_server(
            "ann",
            catalog,
            "github-prod",
            &[("ORG", "acme")],
            &[("TOKEN", TOKEN)],
        )
        .await;
    let patch = ServerConfigPatch {
        config: BTreeMap::new(),
        secrets: BTreeMap::from([(
            "WEBHOOK_SECRET".to_string(),
            Some(SecretString::from(WEBHOOK.to_string())),
        )]),
        restart_policy: None,
    };
    h.bus
        .update_server_config(&meta("ann"), id.into(), patch)
        .await
        .unwrap();
    h.catch_up().await;

    let secrets = secret_material(&h).await;
    for table in [
        "servers",
        "catalog_entries",
        "catalog_server_tools",
        "audit_log",
        "audit_target_names",
    ] {
        let rows = h.rows(table).await;
        for row in &rows {
            for secret in &secrets {
                assert!(
                    !row.contains(secret.as_str()),
                    "{table} holds a secret: {row}"
                );
            }
        }
    }
    let servers = h.rows("servers").await;
    assert_eq!(servers.len(), 1);
    assert!(servers[0].contains("WEBHOOK_SECRET"), "key names are kept");
    let v = view(&h, id).await.unwrap();
    assert_eq!(
        v.secrets,
        json!({ "TOKEN": "********", "WEBHOOK_SECRET": "********" })
    );
}
