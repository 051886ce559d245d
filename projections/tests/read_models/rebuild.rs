//! Rebuilding from the first event, and crash safety: a runner killed at random points
//! between and during batches, restarted until caught up, ends with exactly the rows a
//! clean rebuild produces.

use std::sync::Arc;
use std::time::Duration;

use berth_infrastructure::subscription::RunnerOptions;
use berth_projections::{Projections, RebuildError, PROJECTION_NAMES};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::kit::Harness;
use crate::sim::write_history;

/// Every read-model table.
const TABLES: [&str; 7] = [
    "catalog_entries",
    "catalog_server_tools",
    "servers",
    "audit_log",
    "audit_target_names",
    "bulk_operations",
    "bulk_targets",
];

async fn snapshot(h: &Harness) -> Vec<Vec<String>> {
    let mut tables = Vec::new();
    for table in TABLES {
        tables.push(h.rows(table).await);
    }
    tables
}

async fn count(h: &Harness, sql: &str) -> usize {
    let n: i64 = h.client().await.query_one(sql, &[]).await.unwrap().get(0);
    usize::try_from(n).unwrap()
}

fn seed() -> u64 {
    let seed = std::env::var("BERTH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("BERTH_TEST_SEED={seed}");
    seed
}

#[tokio::test]
async fn rebuilding_yields_the_same_rows_and_unknown_names_are_refused() {
    let h = Harness::new().await;
    let (written, live) = write_history(&h.pool, 2, 600, seed()).await;
    h.catch_up().await;
    let before = snapshot(&h).await;
    assert_eq!(count(&h, "SELECT count(*) FROM audit_log").await, written);
    assert_eq!(count(&h, "SELECT count(*) FROM servers").await, live);

    for name in PROJECTION_NAMES {
        let checkpoint = h.projections.rebuild(name).await.unwrap();
        assert!(checkpoint.position > 0);
        assert_eq!(snapshot(&h).await, before, "after rebuilding {name}");
    }

    match h.projections.rebuild("servrs").await {
        Err(e @ RebuildError::UnknownProjection { .. }) => {
            assert_eq!(
                e.to_string(),
                "unknown projection `servrs`; valid names are: catalog, servers, audit, bulk, identity"
            );
        }
        other => panic!("expected an unknown projection error, got {other:?}"),
    }
}

#[tokio::test]
async fn runners_killed_at_random_points_end_exactly_where_a_rebuild_does() {
    let h = Harness::new().await;
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    // Small batches: many commits to be interrupted.
    let options = RunnerOptions {
        batch_size: 37,
        poll_interval: Duration::from_millis(20),
    };
    let crashing = Arc::new(Projections::with_options(
        h.db.database(),
        h.pool.clone(),
        options,
    ));
    let writing = tokio::spawn({
        let pool = h.pool.clone();
        async move { write_history(&pool, 3, 3000, seed).await }
    });
    let (_never, shutdown) = tokio::sync::watch::channel(false);
    let mut rounds = 0;
    let mut interrupted = 0;
    while !writing.is_finished() || rounds < 40 {
        rounds += 1;
        let alive = Duration::from_micros(rng.gen_range(0..40_000));
        if rng.gen_bool(0.5) {
            let run = tokio::time::timeout(alive, crashing.catch_up_all()).await;
            match run {
                Ok(done) => done.unwrap(),
                Err(_) => interrupted += 1,
            }
        } else {
            let tasks = crashing.clone().spawn(shutdown.clone());
            tokio::time::sleep(alive).await;
            for task in tasks {
                task.abort();
                if task.await.is_err_and(|e| e.is_cancelled()) {
                    interrupted += 1;
                }
            }
        }
    }
    let (written, live) = writing.await.unwrap();
    crashing.catch_up_all().await.unwrap();
    eprintln!("{written} events, {rounds} rounds, {interrupted} interruptions");
    assert!(interrupted > 10, "the runners were interrupted");

    let survived = snapshot(&h).await;
    assert_eq!(count(&h, "SELECT count(*) FROM audit_log").await, written);
    assert_eq!(count(&h, "SELECT count(*) FROM servers").await, live);
    let events_in_audit = count(
        &h,
        "SELECT count(*) FROM events e JOIN audit_log a ON a.position = e.global_position",
    )
    .await;
    assert_eq!(events_in_audit, written);

    let clean = Projections::new(h.db.database(), h.pool.clone());
    for name in PROJECTION_NAMES {
        clean.rebuild(name).await.unwrap();
    }
    let rebuilt = snapshot(&h).await;
    for ((table, a), b) in TABLES.iter().zip(&survived).zip(&rebuilt) {
        assert_eq!(a.len(), b.len(), "{table}: row counts differ");
        if let Some((x, y)) = a.iter().zip(b).find(|(x, y)| x != y) {
            panic!("{table}: rows differ after crashes:\n{x}\n{y}");
        }
    }
}
