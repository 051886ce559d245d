//! The writer hashes what it appends (`infrastructure/src/append.rs`) instead of a
//! per-row trigger: its hashes must be the database's own, byte for byte, for any event
//! a command can carry, and the trigger must still chain rows that come without one.

use std::sync::Arc;

use berth_infrastructure::chain::jsonb_text;
use berth_infrastructure::event_store::PostgresEventRepository;
use berth_infrastructure::group_commit::GroupCommitter;
use berth_infrastructure::verify::verify;
use berth_tests::{function_calls, test_database};
use cqrs_es::persist::SerializedEvent;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// Characters that stress the text rendering: escapes, control characters, quotes,
/// multi-byte UTF-8.
const CHARACTERS: &[char] = &[
    'a', 'b', 'Z', '0', ' ', '"', '\\', '/', '\n', '\r', '\t', '\u{8}', '\u{c}', '\u{1}', '\u{1f}',
    '\u{7f}', 'é', 'ß', '€', '\u{2028}', '😀', '{', ':', ',',
];

fn text(rng: &mut StdRng, max: usize) -> String {
    (0..rng.gen_range(0..=max))
        .map(|_| CHARACTERS[rng.gen_range(0..CHARACTERS.len())])
        .collect()
}

fn number(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..8) {
        0 => json!(rng.gen::<i64>()),
        1 => json!(rng.gen::<u64>()),
        2 => json!(rng.gen_range(-1000..1000)),
        3 => json!(f64::from(rng.gen_range(-1000..1000))),
        4 => json!(rng.gen::<f64>() * 10f64.powi(rng.gen_range(-40..40))),
        5 => json!(-rng.gen::<f64>() * 10f64.powi(rng.gen_range(-320..300))),
        6 => json!([0.0, -0.0, 0.1, 1e-7, 5e-324, 1e300, 1.5e16, 123.456][rng.gen_range(0..8)]),
        _ => json!(rng.gen::<f32>()),
    }
}

fn value(rng: &mut StdRng, depth: u32) -> Value {
    let kinds = if depth == 0 { 4 } else { 6 };
    match rng.gen_range(0..kinds) {
        0 => Value::Null,
        1 => Value::Bool(rng.gen()),
        2 => number(rng),
        3 => Value::String(text(rng, 12)),
        4 => Value::Array(
            (0..rng.gen_range(0..5))
                .map(|_| value(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut map = Map::new();
            for _ in 0..rng.gen_range(0..6) {
                // Short keys from few characters, so that lengths and bytes tie often.
                let key: String = (0..rng.gen_range(0..4))
                    .map(|_| ['a', 'b', 'é', '"'][rng.gen_range(0..4)])
                    .collect();
                map.insert(key, value(rng, depth - 1));
            }
            Value::Object(map)
        }
    }
}

#[tokio::test]
async fn the_writers_rendering_of_json_is_postgresqls() {
    let db = test_database().await;
    let pool = db.database().pool(1).expect("a pool");
    let client = pool.get().await.expect("a connection");
    let mut rng = StdRng::seed_from_u64(19);
    let values: Vec<Value> = (0..5_000).map(|_| value(&mut rng, 4)).collect();
    let ours: Vec<String> = values.iter().map(jsonb_text).collect();
    // PostgreSQL's rendering of what serde_json sends, and of the writer's own text.
    let rows = client
        .query(
            "SELECT v::text, o::jsonb::text FROM unnest($1::jsonb[], $2::text[]) AS u(v, o)",
            &[&values, &ours],
        )
        .await
        .expect("the database's renderings");
    assert_eq!(rows.len(), values.len());
    for ((row, value), mine) in rows.iter().zip(&values).zip(&ours) {
        let theirs: String = row.get(0);
        assert_eq!(mine, &theirs, "rendering {value}");
        let again: String = row.get(1);
        assert_eq!(mine, &again, "the writer's text is stored as it is");
    }
    // The check the writer makes once per process before it hashes anything.
    assert!(berth_infrastructure::chain::rendering_agrees(&client)
        .await
        .expect("the check"));
}

fn event(rng: &mut StdRng, aggregate_id: &str, sequence: usize) -> SerializedEvent {
    SerializedEvent::new(
        aggregate_id.into(),
        sequence,
        "test".into(),
        format!("Happened{}", rng.gen_range(0..3)),
        "1".into(),
        value(rng, 3),
        json!({ "actor": text(rng, 6), "n": number(rng) }),
    )
}

/// 100,000 events written the way commands write them (the group committer, sixteen
/// writers at once, one to four events per command), with random payloads: every
/// stored hash is the one the database's own function gives for the stored row, and
/// `berth verify` walks them clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hashes_written_by_berth_equal_the_databases_own_on_100_000_events() {
    const WRITERS: u64 = 16;
    const EVENTS: usize = 100_000;
    let db = test_database().await;
    let pool = db.database().pool(8).expect("a pool");
    let committer = Arc::new(GroupCommitter::new(pool.clone()));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let committer = Arc::clone(&committer);
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(w);
                let mut written = 0;
                let mut streams: Vec<(String, usize)> = Vec::new();
                while written < EVENTS / WRITERS as usize {
                    if streams.is_empty() || rng.gen_bool(0.1) {
                        streams.push((Uuid::now_v7().to_string(), 0));
                    }
                    let at = rng.gen_range(0..streams.len());
                    let (id, last) = &mut streams[at];
                    let events: Vec<_> = (1..=rng.gen_range(1..=4))
                        .map(|k| event(&mut rng, id, *last + k))
                        .collect();
                    committer.append(&events).await.expect("an append");
                    *last += events.len();
                    written += events.len();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a writer");
    }
    let client = pool.get().await.expect("a connection");
    let row = client
        .query_one(
            "SELECT count(*), \
                    count(*) FILTER (WHERE hash <> sha256(coalesce(prev_hash, '\\x'::bytea) \
                                      || events_canonical_bytes(events))) \
             FROM events",
            &[],
        )
        .await
        .expect("the database's own hashes");
    let (stored, differing): (i64, i64) = (row.get(0), row.get(1));
    assert!(stored >= 100_000, "{stored} events");
    assert_eq!(differing, 0, "hashes that differ from the database's own");
    let report = verify(&pool).await.expect("verify");
    assert_eq!(report.first_break, None);
    assert_eq!(report.events, u64::try_from(stored).expect("a count"));
}

/// The writer's rows do not go through the chain trigger; a row without a hash (written
/// by hand, or imported) still does, and chains onto the writer's.
#[tokio::test]
async fn the_chain_trigger_runs_only_for_rows_without_a_hash() {
    let db = test_database().await;
    let pool = db.database().pool(1).expect("a pool");
    let mut client = pool.get().await.expect("a connection");
    let tx = client.transaction().await.expect("a transaction");
    function_calls::count_in(&tx).await;
    let mut rng = StdRng::seed_from_u64(7);
    let events: Vec<_> = (1..=5).map(|s| event(&mut rng, "s", s)).collect();
    PostgresEventRepository::append_in_transaction(&tx, &events)
        .await
        .expect("the writer's append");
    let by_the_writer = function_calls::calls(&tx, "events_chain").await;
    assert_eq!(
        by_the_writer, 0,
        "the trigger ran for rows the writer hashed"
    );
    tx.execute(
        "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, \
         event_version, payload, metadata) \
         VALUES (gen_random_uuid(), 'test', 's', 6, 'ByHand', '1', '{\"b\": 1.50, \"a\": 1e2}', '{}')",
        &[],
    )
    .await
    .expect("a row by hand");
    let by_hand = function_calls::calls(&tx, "events_chain").await;
    assert_eq!(
        by_hand, 1,
        "the trigger chains a row that came without a hash"
    );
    // The next append chains onto the row the trigger hashed.
    PostgresEventRepository::append_in_transaction(&tx, &[event(&mut rng, "s", 7)])
        .await
        .expect("an append after the hand-written row");
    tx.commit().await.expect("commit");
    drop(client);
    let report = verify(&pool).await.expect("verify");
    assert_eq!((report.events, report.first_break), (7, None));
}

/// An event whose predecessor is not stored is refused, naming it; in a shared group
/// statement only its own command fails.
#[tokio::test]
async fn an_event_without_a_stored_predecessor_is_refused_alone() {
    let db = test_database().await;
    let pool = db.database().pool(4).expect("a pool");
    let committer = GroupCommitter::new(pool.clone());
    let mut rng = StdRng::seed_from_u64(3);
    let gap = event(&mut rng, "gap", 3);
    let firsts: Vec<Vec<SerializedEvent>> = (0..8)
        .map(|n| vec![event(&mut rng, &format!("ok{n}"), 1)])
        .collect();
    let (refused, accepted) = tokio::join!(
        committer.append(std::slice::from_ref(&gap)),
        futures_util::future::join_all(firsts.iter().map(|events| committer.append(events)))
    );
    let refused = format!("{:?}", refused.expect_err("a gap in the stream"));
    assert!(
        refused.contains("event 3 of test/gap has no predecessor to chain to"),
        "{refused}"
    );
    assert!(accepted.iter().all(Result::is_ok), "{accepted:?}");
    let report = verify(&pool).await.expect("verify");
    assert_eq!(
        (report.events, report.streams, report.first_break),
        (8, 8, None)
    );
}

/// Appends are numbered and hashed by the writer, through an opening query that looks
/// each stream key up in the stream index whatever the table's size when its plan was
/// made: a plan made on a near-empty table and kept (the append's statements use generic
/// plans) must not scan the whole table once it has grown. Commands append alone and in
/// groups (ten at once), and the trigger hashes none of their rows.
#[tokio::test]
async fn appends_are_hashed_by_the_writer_and_never_scan_the_table() {
    use berth_application::read_guard::StreamAt;
    let db = test_database().await;
    // One connection: the plans made on the first appends are the ones used after.
    let pool = db.database().pool(1).expect("a pool");
    pool.get()
        .await
        .expect("a connection")
        .batch_execute("SET track_functions = 'pl'")
        .await
        .expect("tracking function calls");
    let committer = GroupCommitter::new(pool.clone());
    let mut rng = StdRng::seed_from_u64(11);
    committer
        .append(&[event(&mut rng, "first", 1)])
        .await
        .expect("the first append");
    let guard = StreamAt {
        aggregate_type: "test".into(),
        aggregate_id: "first".into(),
        sequence: 1,
    };
    for sequence in 1..=30 {
        let commands: Vec<_> = (0..10)
            .map(|n| vec![event(&mut rng, &format!("s{n}"), sequence)])
            .collect();
        let appended = futures_util::future::join_all(
            commands
                .iter()
                .map(|events| committer.append_guarded(events, vec![guard.clone()])),
        )
        .await;
        assert!(appended.iter().all(Result::is_ok), "{appended:?}");
    }
    let client = pool.get().await.expect("the same connection");
    client
        .execute("SELECT pg_stat_force_next_flush()", &[])
        .await
        .expect("flushing this session's statistics");
    let row = client
        .query_one(
            "SELECT (SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'events'), \
                    (SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_user_functions \
                     WHERE funcname = 'events_chain')",
            &[],
        )
        .await
        .expect("the statistics");
    let (scans, hashed_by_the_trigger): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(scans, 0, "scans of the whole events table");
    assert_eq!(hashed_by_the_trigger, 0, "events hashed by the trigger");
    drop(client);
    let report = verify(&pool).await.expect("verify");
    assert_eq!((report.events, report.first_break), (301, None));
}
