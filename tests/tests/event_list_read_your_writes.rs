//! Read-your-writes on the event lists: right after a command answered with position P,
//! `GET /events?aggregate_id=…&min_position=P` (and the server's own event list) lists P,
//! while the process manager writes to the same server and other writers keep
//! transactions open. Without `min_position` the feed may still hold P back.

mod api_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use api_support::{process_fixture_entry, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

fn positions(page: &Value) -> Vec<i64> {
    page["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["position"].as_i64())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listed_stream_shows_the_write_its_min_position_names_under_load() {
    let app = Arc::new(TestApp::spawn_with_processes().await);
    let entry = app
        .register(&process_fixture_entry("listed", "stdio", &["MODE"]))
        .await;
    let id = app
        .create_server(&json!({"catalog_id": entry, "name": "listed-1"}))
        .await;
    app.start(&id).await;

    // Other writers: each command is a transaction that may hold the feed back.
    let done = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (app, done) = (app.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !done.load(Ordering::SeqCst) {
                let body = json!({
                    "name": format!("load-{w}-{n}"),
                    "transport": "stdio",
                    "runtime": {"type": "docker", "image": "berth/none:1"}
                });
                app.post("/api/v1/catalog", &body).await.expect(201);
                n += 1;
            }
        }));
    }

    for round in 0..40 {
        // Every few rounds a restart, so the process manager writes to this server too.
        if round % 5 == 0 {
            let restart = app.command(&format!("/api/v1/servers/{id}/restart")).await;
            assert!([202, 409].contains(&restart.status.as_u16()), "{restart:?}");
        }
        let patched = app
            .json(
                Method::PATCH,
                &format!("/api/v1/servers/{id}"),
                &json!({"config": {"MODE": format!("round-{round}")}}),
            )
            .await;
        patched.expect(202);
        let p = patched.position();
        let listed = app
            .get(&format!(
                "/api/v1/events?aggregate_id={id}&limit=1000&min_position={p}"
            ))
            .await;
        listed.expect(200);
        assert!(
            positions(&listed.json()).contains(&p),
            "round {round}: position {p} not listed"
        );
        let own = app
            .get(&format!(
                "/api/v1/servers/{id}/events?limit=1000&min_position={p}"
            ))
            .await;
        own.expect(200);
        assert!(
            positions(&own.json()).contains(&p),
            "round {round}: position {p} not in the server's own list"
        );
    }
    done.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.expect("a writer failed");
    }

    // The case the load only sometimes hits, made certain: an older transaction still
    // open holds the write back from the feed. A list without `min_position` does not
    // show it yet; with it, the list waits for the transaction to end and shows it.
    // (Held 300 ms only: the feed's horizon is the whole cluster's.)
    for round in 0..3 {
        let sql = app.sql().await;
        sql.batch_execute("BEGIN; SELECT txid_current();")
            .await
            .expect("an open transaction with an xid");
        let patched = app
            .json(
                Method::PATCH,
                &format!("/api/v1/servers/{id}"),
                &json!({"config": {"MODE": format!("held-{round}")}}),
            )
            .await;
        patched.expect(202);
        let p = patched.position();
        let early = app
            .get(&format!("/api/v1/events?aggregate_id={id}&limit=1000"))
            .await;
        assert!(
            !positions(&early.json()).contains(&p),
            "the feed showed {p} behind an open transaction"
        );
        let ends = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            sql.batch_execute("COMMIT").await.expect("commit");
        });
        let waited = app
            .get(&format!(
                "/api/v1/events?aggregate_id={id}&limit=1000&min_position={p}"
            ))
            .await;
        waited.expect(200);
        assert!(positions(&waited.json()).contains(&p), "round {round}");
        ends.await.expect("the transaction ended");
    }

    // A position beyond the log's head is refused at once, naming the parameter.
    let beyond = app.get("/api/v1/events?min_position=999999999").await;
    beyond.expect_problem(422);
    assert_eq!(beyond.problem_fields(), vec!["min_position"]);
    let app = Arc::try_unwrap(app).unwrap_or_else(|_| panic!("a writer still holds Berth"));
    app.stop().await;
}
