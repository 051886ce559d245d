//! `berth verify` against an attacker with superuser access to the database (triggers
//! off, `session_replication_role = replica`): the newest event deleted, or an event's
//! actor forged with its hash recomputed by the database's own function, passed the
//! hash chains. The signed checkpoints catch both, naming the position, even when the
//! attacker also empties the checkpoints table.

#[allow(dead_code)]
mod cli_support;

use std::path::Path;
use std::process::Output;

use berth_tests::{test_database, TestDatabase};
use cli_support::{berth_command, data_dir, stderr, stdout};

/// `berth args` on the test database.
fn berth(db: &TestDatabase, dir: &Path, args: &[&str]) -> Output {
    berth_command(dir)
        .env("DATABASE_URL", db.url())
        .args(args)
        .output()
        .expect("running berth")
}

fn ok(db: &TestDatabase, dir: &Path, args: &[&str]) -> String {
    let out = berth(db, dir, args);
    assert!(out.status.success(), "berth {args:?}: {}", stderr(&out));
    stdout(&out)
}

fn refused(db: &TestDatabase, dir: &Path, args: &[&str]) -> String {
    let out = berth(db, dir, args);
    assert!(
        !out.status.success(),
        "berth {args:?} passed: {}",
        stdout(&out)
    );
    stderr(&out)
}

/// A few users and keys: events in several streams, all signed by a checkpoint.
fn signed_log(db: &TestDatabase, dir: &Path) -> serde_json::Value {
    for name in ["ann", "bob", "cyd"] {
        ok(db, dir, &["users", "create", name, "--role", "operator"]);
        ok(db, dir, &["keys", "create", "--user", name]);
    }
    let printed = ok(db, dir, &["checkpoint"]);
    serde_json::from_str(&printed).expect("the checkpoint as JSON")
}

/// Runs `sql` with the triggers off, as a database superuser could.
async fn behind_the_triggers(db: &TestDatabase, sql: &str) {
    let client = db.database().connect().await.expect("connecting");
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL session_replication_role = replica; {sql}; COMMIT;"
        ))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_newest_event_is_caught_even_without_the_checkpoints_table() {
    let db = test_database().await;
    let (_guard, dir) = data_dir("berth-signed-log-");
    let checkpoint = signed_log(&db, &dir);
    let said = ok(&db, &dir, &["verify"]);
    assert!(said.contains("signed checkpoints hold"), "{said}");
    let anchor = dir.with_file_name("anchor.json");
    std::fs::write(&anchor, checkpoint.to_string()).expect("keeping the anchor");

    let newest = checkpoint["position"].as_i64().expect("a position");
    behind_the_triggers(
        &db,
        &format!("DELETE FROM events WHERE global_position = {newest}"),
    )
    .await;
    let said = refused(&db, &dir, &["verify"]);
    assert!(
        said.contains(&format!("the event at position {newest} is missing")),
        "{said}"
    );

    // Covering the tracks in the database is not enough: the data directory keeps the
    // newest checkpoint, and a person may keep one elsewhere.
    behind_the_triggers(&db, "DELETE FROM log_checkpoints").await;
    let said = refused(&db, &dir, &["verify"]);
    assert!(said.contains(&format!("position {newest}")), "{said}");
    std::fs::remove_file(dir.join("checkpoint.latest.json")).expect("removing the kept one");
    let anchor = anchor.display().to_string();
    let said = refused(&db, &dir, &["verify", "--anchor", &anchor]);
    assert!(said.contains(&format!("position {newest}")), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_actor_with_a_recomputed_hash_is_caught() {
    let db = test_database().await;
    let (_guard, dir) = data_dir("berth-signed-log-");
    signed_log(&db, &dir);
    // The last event of ann's stream: no later event links to it, so its chain holds.
    let client = db.database().connect().await.expect("connecting");
    let forged: i64 = client
        .query_one(
            "SELECT max(global_position) FROM events WHERE aggregate_type = 'user' \
             AND aggregate_id = (SELECT aggregate_id FROM events \
               WHERE payload->>'name' = 'ann' AND event_type = 'UserCreated')",
            &[],
        )
        .await
        .expect("ann's newest event")
        .get(0);
    behind_the_triggers(
        &db,
        &format!(
            "UPDATE events SET metadata = jsonb_set(metadata, '{{actor}}', '\"user:bob\"') \
             WHERE global_position = {forged}; \
             UPDATE events SET hash = sha256(coalesce(prev_hash, '\\x'::bytea) || \
               events_canonical_bytes(events)) WHERE global_position = {forged}"
        ),
    )
    .await;
    let said = refused(&db, &dir, &["verify"]);
    assert!(said.contains("is not what was signed"), "{said}");
    assert!(said.contains("position"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_not_signed_by_this_installation_is_refused_and_not_built_on() {
    let db = test_database().await;
    let (_guard, dir) = data_dir("berth-signed-log-");
    signed_log(&db, &dir);
    // A row the attacker wrote: a copy of the real one further on, whose signature does
    // not cover what it says.
    let client = db.database().connect().await.expect("connecting");
    client
        .execute(
            "INSERT INTO log_checkpoints SELECT transaction_id, position + 1000, event_count, \
             head_hash, digest, recorded_at, key_id, signature FROM log_checkpoints",
            &[],
        )
        .await
        .expect("forging a checkpoint");
    let said = refused(&db, &dir, &["verify"]);
    assert!(said.contains("does not verify"), "{said}");
    // And Berth does not sign on from it.
    ok(&db, &dir, &["users", "create", "dan", "--role", "viewer"]);
    let said = refused(&db, &dir, &["checkpoint"]);
    assert!(said.contains("not signed by this installation"), "{said}");
}
