//! `berth serve` on its embedded default, stopped with SIGTERM and started again on the
//! same data directory, finds everything it had: same servers, same audit, same events
//! and positions; and it stops its PostgreSQL cluster on the way out.

#[allow(dead_code)]
mod cli_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cli_support::{data_dir, Serve};
use serde_json::{json, Value};

/// `berth serve` on the data dir, with its runtime left to the default.
fn start(data_dir: &Path) -> Serve {
    let berth = Serve::start(data_dir, &[]);
    let mode = std::fs::metadata(data_dir.join("admin-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "admin token is private");
    berth
}

/// SIGTERM, then a clean exit.
fn stop(berth: Serve) {
    let status = berth.stop();
    assert!(status.success(), "berth exits cleanly on SIGTERM: {status}");
}

async fn everything(berth: &Serve, server_id: &str) -> (Value, Value, Value, Value) {
    let server = berth
        .get_json(&format!("/api/v1/servers/{server_id}"))
        .await;
    let audit = berth.get_json("/api/v1/audit?page_size=500").await;
    let events = berth.get_json("/api/v1/events?limit=1000").await;
    let catalog = berth.get_json("/api/v1/catalog?page_size=500").await;
    (server, audit, events, catalog)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_the_same_data_dir_finds_everything_it_had() {
    let (_guard, dir) = data_dir("berth-durability-");

    let berth = start(&dir);
    let entry = berth
        .post(
            "/api/v1/catalog",
            json!({
                "name": "durable",
                "description": "survives restarts",
                "transport": "stdio",
                "runtime": { "type": "process", "command": "true" },
                "config_schema": [
                    { "key": "TOKEN", "description": "", "required": true, "secret": true }
                ],
                "resources": {}
            }),
        )
        .await;
    let server = berth
        .post(
            "/api/v1/servers",
            json!({
                "catalog_id": entry["id"],
                "name": "keeper",
                "config": {},
                "secrets": { "TOKEN": "durable-secret-value" }
            }),
        )
        .await;
    let server_id = server["id"].as_str().unwrap().to_string();
    // Disabling involves no runtime, so nothing changes behind the test's back.
    let disabled = berth
        .post(&format!("/api/v1/servers/{server_id}/disable"), json!({}))
        .await;
    let last = disabled["position"].as_i64().unwrap();
    let wait = format!("min_position={last}");
    berth.get_json(&format!("/api/v1/audit?{wait}")).await;
    berth
        .get_json(&format!("/api/v1/servers/{server_id}?{wait}"))
        .await;
    berth.get_json(&format!("/api/v1/catalog?{wait}")).await;
    let before = everything(&berth, &server_id).await;
    assert_eq!(before.0["enabled"], false);
    stop(berth);
    assert!(
        !dir.join("pg").join("postmaster.pid").exists(),
        "the embedded cluster stopped with berth"
    );

    let berth = start(&dir);
    let after = everything(&berth, &server_id).await;
    assert_eq!(after.0, before.0, "same server");
    assert_eq!(after.1, before.1, "same audit");
    assert_eq!(
        after.2, before.2,
        "same events and positions: the predefined catalog re-sync wrote nothing"
    );
    assert_eq!(after.3, before.3, "same catalog");
    // And it keeps working where it left off.
    let enabled = berth
        .post(&format!("/api/v1/servers/{server_id}/enable"), json!({}))
        .await;
    assert!(enabled["position"].as_i64().unwrap() > last);
    stop(berth);
    assert!(!dir.join("pg").join("postmaster.pid").exists());

    // Each stop signed the log's head: the last event written is covered.
    let kept: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("checkpoint.latest.json")).expect("a kept checkpoint"),
    )
    .expect("a checkpoint as JSON");
    assert!(kept["position"].as_i64().unwrap() >= enabled["position"].as_i64().unwrap());
    let said = cli_support::ok(&dir, &["verify"]);
    assert!(said.contains("signed checkpoints hold"), "{said}");
    assert!(said.contains("0 events after it"), "{said}");
}
