//! The audit projection: one entry per event with actor, action, target, summary and
//! request metadata; filters; newest-first pages and oldest-first export batches.

use std::collections::BTreeMap;

use berth_application::servers::{LifecycleAction, ServerConfigPatch};
use berth_domain::server::ServerCommand;
use berth_projections::{audit_batch, list_audit, AuditEntry, AuditFilter};
use uuid::Uuid;

use crate::kit::{definition, meta, page, system, Harness};

async fn all(h: &Harness, filter: &AuditFilter) -> Vec<AuditEntry> {
    let p = list_audit(&h.client().await, filter, page(1, 500))
        .await
        .unwrap();
    assert_eq!(usize::try_from(p.total).unwrap(), p.items.len());
    p.items
}

#[tokio::test]
async fn every_event_is_an_entry_saying_who_did_what() {
    let h = Harness::new().await;
    let catalog = h.register("ann", definition("github", "")).await;
    let (id, _) = h
        .create_server(
            "ann",
            catalog,
            "github-prod",
            &[("ORG", "acme")],
            &[("TOKEN", "t0ps3cret")],
        )
        .await;
    let start = meta("bob");
    h.bus
        .server_lifecycle(&start, id.into(), LifecycleAction::Start)
        .await
        .unwrap();
    let cause = Uuid::now_v7();
    let bulk = Uuid::now_v7();
    h.bus
        .server(
            id.into(),
            ServerCommand::BeginProvisioning,
            &system(Some(bulk), Some(cause)),
        )
        .await
        .unwrap();
    h.bus
        .server(
            id.into(),
            ServerCommand::RecordFailed {
                reason: "pull failed:\n  manifest unknown".into(),
            },
            &system(Some(bulk), None),
        )
        .await
        .unwrap();
    let patch = ServerConfigPatch {
        config: BTreeMap::from([("ORG".to_string(), Some("globex-secret-org".to_string()))]),
        secrets: BTreeMap::new(),
        restart_policy: None,
    };
    h.bus
        .update_server_config(&meta("ann"), id.into(), patch)
        .await
        .unwrap();
    h.bus
        .update_catalog_entry(&meta("ann"), catalog.into(), definition("github-ee", ""))
        .await
        .unwrap();
    h.bus
        .server_lifecycle(&meta("ann"), id.into(), LifecycleAction::Delete)
        .await
        .unwrap();
    h.catch_up().await;

    let entries = all(&h, &AuditFilter::default()).await;
    let positions: Vec<i64> = entries.iter().map(|e| e.position).collect();
    let mut newest_first = positions.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(positions, newest_first);
    let lines: Vec<(&str, &str, &str)> = entries
        .iter()
        .rev()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.summary.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (
                "user:ann",
                "catalog_entry.registered",
                "registered custom catalog entry \"github\""
            ),
            (
                "user:ann",
                "server.created",
                "created server \"github-prod\" from catalog entry \"github\""
            ),
            (
                "user:bob",
                "server.start_requested",
                "requested start of server \"github-prod\""
            ),
            (
                "system:process-manager",
                "server.provisioning_began",
                "began provisioning server \"github-prod\""
            ),
            (
                "system:process-manager",
                "server.failed",
                "server \"github-prod\" failed: pull failed: manifest unknown"
            ),
            (
                "user:ann",
                "server.config_updated",
                "changed the configuration of server \"github-prod\": config.ORG"
            ),
            (
                "user:ann",
                "catalog_entry.updated",
                "updated catalog entry \"github-ee\" (was \"github\") to version 2"
            ),
            (
                "user:ann",
                "server.deleted",
                "deleted server \"github-prod\""
            ),
        ]
    );
    for e in &entries {
        assert!(
            !e.summary.contains("globex"),
            "config values stay out: {}",
            e.summary
        );
        assert!(e.request_id.is_some());
    }
    let started = entries
        .iter()
        .find(|e| e.action == "server.start_requested")
        .unwrap();
    assert_eq!(started.request_id, Some(start.request_id.to_string()));
    assert_eq!(
        (started.target_type.as_str(), started.target_id.clone()),
        ("server", id.to_string())
    );
    let provisioning = entries
        .iter()
        .find(|e| e.action == "server.provisioning_began")
        .unwrap();
    assert_eq!(provisioning.correlation_id, Some(bulk.to_string()));
    assert_eq!(provisioning.causation_id, Some(cause.to_string()));

    let count = |filter: AuditFilter| {
        let h = &h;
        async move { all(h, &filter).await.len() }
    };
    let by_actor = AuditFilter {
        actor: Some("system:process-manager".into()),
        ..Default::default()
    };
    assert_eq!(count(by_actor).await, 2);
    let by_server = AuditFilter {
        server_id: Some(id),
        ..Default::default()
    };
    assert_eq!(count(by_server).await, 6);
    let by_action = AuditFilter {
        action: Some("server.deleted".into()),
        ..Default::default()
    };
    assert_eq!(count(by_action).await, 1);
    let by_correlation = AuditFilter {
        correlation_id: Some(bulk),
        ..Default::default()
    };
    assert_eq!(count(by_correlation).await, 2);
    let first = entries.last().unwrap().at;
    let last = entries.first().unwrap().at;
    let in_range = AuditFilter {
        from: Some(first),
        to: Some(last + chrono::Duration::seconds(1)),
        ..Default::default()
    };
    assert_eq!(count(in_range).await, 8);
    let before_everything = AuditFilter {
        to: Some(first),
        ..Default::default()
    };
    assert_eq!(count(before_everything).await, 0);
    let nobody = AuditFilter {
        actor: Some("user:ann".into()),
        action: Some("server.failed".into()),
        ..Default::default()
    };
    assert_eq!(count(nobody).await, 0);

    let second_page = list_audit(&h.client().await, &AuditFilter::default(), page(2, 3))
        .await
        .unwrap();
    assert_eq!(second_page.total, 8);
    assert_eq!(second_page.items, entries[3..6]);
}

#[tokio::test]
async fn export_batches_run_oldest_first_after_a_position() {
    let h = Harness::new().await;
    let catalog = h.register("ann", definition("github", "")).await;
    for i in 0..7 {
        h.create_server(
            "ann",
            catalog,
            &format!("s{i}"),
            &[("ORG", "o")],
            &[("TOKEN", "t")],
        )
        .await;
    }
    h.catch_up().await;
    let client = h.client().await;
    let filter = AuditFilter {
        action: Some("server.created".into()),
        ..Default::default()
    };
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let batch = audit_batch(&client, &filter, after, 3).await.unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 3);
        after = batch.last().unwrap().position;
        seen.extend(batch);
    }
    let summaries: Vec<String> = seen.iter().map(|e| e.summary.clone()).collect();
    let expected: Vec<String> = (0..7)
        .map(|i| format!("created server \"s{i}\" from catalog entry \"github\""))
        .collect();
    assert_eq!(summaries, expected);
    let everything = audit_batch(&client, &AuditFilter::default(), 0, 100)
        .await
        .unwrap();
    assert_eq!(everything.len(), 8);
    assert_eq!(everything[0].action, "catalog_entry.registered");
}
