//! What writing one event costs the database beyond the row itself: the owner trigger
//! runs for a stream's first event only, and the queries that read streams' first events
//! go through the index of first events (`events_stream_starts`), not an index kept up to
//! date for every event.

use berth_tests::{function_calls, test_database};
use serde_json::json;
use uuid::Uuid;

/// Inserts a stream of `events` events of aggregate `aggregate_type`, the first of type
/// `first_type` with `first_payload`, inside `tx`.
async fn stream(
    tx: &deadpool_postgres::Transaction<'_>,
    aggregate_type: &str,
    id: &str,
    first_type: &str,
    first_payload: serde_json::Value,
    events: i64,
) {
    for sequence in 1..=events {
        let (event_type, payload) = if sequence == 1 {
            (first_type, first_payload.clone())
        } else {
            ("Something", json!({"n": sequence}))
        };
        tx.execute(
            "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) VALUES ($1, $2, $3, $4, $5, '1', $6, '{}')",
            &[
                &Uuid::now_v7(),
                &aggregate_type,
                &id,
                &sequence,
                &event_type,
                &payload,
            ],
        )
        .await
        .expect("an event");
    }
}

#[tokio::test]
async fn the_owner_trigger_runs_for_a_streams_first_event_only() {
    let db = test_database().await;
    let pool = db.database().pool(1).expect("a pool");
    let mut client = pool.get().await.expect("a connection");
    let tx = client.transaction().await.expect("a transaction");
    function_calls::count_in(&tx).await;
    stream(
        &tx,
        "server",
        "s1",
        "ServerCreated",
        json!({"owner": "user:ada"}),
        10,
    )
    .await;
    let calls = function_calls::calls(&tx, "events_record_owner").await;
    assert_eq!(
        calls, 1,
        "the owner trigger ran for every event of the stream"
    );
    let owner: String = tx
        .query_one(
            "SELECT owner FROM stream_owners WHERE aggregate_type = 'server' AND aggregate_id = 's1'",
            &[],
        )
        .await
        .expect("the stream's owner is recorded")
        .get(0);
    assert_eq!(owner, "user:ada");
}

#[tokio::test]
async fn the_first_events_are_read_through_their_own_index() {
    let db = test_database().await;
    let pool = db.database().pool(1).expect("a pool");
    let mut client = pool.get().await.expect("a connection");
    let tx = client.transaction().await.expect("a transaction");
    let (ada, bob) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    stream(
        &tx,
        "user",
        &ada,
        "UserCreated",
        json!({"name": "ada", "role": "admin"}),
        3,
    )
    .await;
    stream(
        &tx,
        "user",
        &bob,
        "UserCreated",
        json!({"name": "bob", "role": "viewer"}),
        3,
    )
    .await;
    stream(
        &tx,
        "bulk_operation",
        "b1",
        "BulkOperationBegan",
        json!({}),
        5,
    )
    .await;
    let admins = berth_infrastructure::administrators::administrator_ids(&tx)
        .await
        .expect("the administrators");
    assert_eq!(
        admins.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [ada]
    );
    let unfinished = berth_infrastructure::stream::unfinished_streams(
        &tx,
        "bulk_operation",
        "BulkOperationBegan",
        "BulkOperationCompleted",
    )
    .await
    .expect("the unfinished streams");
    assert_eq!(unfinished.len(), 1);
    // On a log this small the planner would scan it; what matters is that an index
    // serves these queries at all, and which.
    tx.batch_execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        .await
        .expect("settings");
    for query in [
        "EXPLAIN SELECT aggregate_id FROM events WHERE aggregate_type = 'user' AND sequence = 1 \
         AND event_type = 'UserCreated' AND payload->>'role' = 'admin'",
        "EXPLAIN SELECT b.aggregate_id FROM events b WHERE b.aggregate_type = 'bulk_operation' \
         AND b.sequence = 1 AND b.event_type = 'BulkOperationBegan' ORDER BY b.global_position",
    ] {
        let plan: Vec<String> = tx
            .query(query, &[])
            .await
            .expect("a plan")
            .iter()
            .map(|row| row.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains("events_stream_starts"), "{query}:\n{plan}");
    }
    let by_type: i64 = tx
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'events' AND indexname = 'events_by_type'",
            &[],
        )
        .await
        .expect("the indexes")
        .get(0);
    assert_eq!(
        by_type, 0,
        "an index on every event's type is kept up to date for nothing"
    );
}
