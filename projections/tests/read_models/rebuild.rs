//! Rebuilding from the first event, and crash safety: a runner killed at random points
//! between and during batches, restarted until caught up, ends with exactly the rows a
//! clean rebuild produces. Blue-green rebuilds run beside writers, readers and the live
//! runners without a reader ever seeing an error or a model going back, and a rebuild
//! interrupted halfway leaves the live model untouched.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_infrastructure::feed::checkpoints::checkpoint_of;
use berth_infrastructure::feed::follow::ReaderOptions;
use berth_infrastructure::feed::Checkpoint;
use berth_projections::identity::list_users;
use berth_projections::{
    list_audit, list_catalog, list_servers, AuditFilter, CatalogFilter, Projections, RebuildError,
    RebuildOptions, ServerFilter, PROJECTION_NAMES,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::kit::{page, Harness};
use crate::sim::write_history;

/// Every read-model table.
const TABLES: [&str; 9] = [
    "catalog_entries",
    "catalog_server_tools",
    "servers",
    "audit_log",
    "audit_target_names",
    "bulk_operations",
    "bulk_targets",
    "users",
    "api_keys",
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
        let report = h.projections.rebuild(name).await.unwrap();
        assert!(report.position > 0);
        assert!(report.events > 0, "{report:?}");
        assert_eq!(snapshot(&h).await, before, "after rebuilding {name}");
    }

    match h.projections.rebuild("servrs").await {
        Err(e @ RebuildError::UnknownProjection { .. }) => {
            assert_eq!(
                e.to_string(),
                "unknown projection `servrs`; valid names are: catalog, servers, audit, bulk, identity, calls"
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
    let options = ReaderOptions {
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

/// Names of the indexes and constraints on the read-model tables, to show a swap keeps them.
async fn schema_names(h: &Harness) -> Vec<String> {
    let sql = "SELECT c.relname || ':' || i.relname FROM pg_index x \
               JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname = 'public' AND c.relname = ANY($1) \
               UNION ALL SELECT r.relname || ':' || k.conname FROM pg_constraint k \
               JOIN pg_class r ON r.oid = k.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace \
               WHERE n.nspname = 'public' AND r.relname = ANY($1) ORDER BY 1";
    let tables: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    h.client()
        .await
        .query(sql, &[&tables])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// What a rebuild leaves behind when it is done: nothing.
async fn leftovers(h: &Harness) -> Vec<String> {
    let sql = "SELECT nspname::text FROM pg_namespace \
               WHERE nspname LIKE 'berth_rebuild_%' OR nspname LIKE 'berth_retired_%' \
               UNION ALL SELECT name FROM subscription_checkpoints WHERE name LIKE '%@rebuild'";
    h.client()
        .await
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn rebuilds_beside_writers_and_readers_lose_nothing_and_match_a_cold_rebuild() {
    let h = Harness::new().await;
    let seed = seed();
    write_history(&h.pool, 2, 1500, seed).await;
    h.catch_up().await;
    let names_before = schema_names(&h).await;

    // The live projections follow the feed as in `berth serve`.
    let (stop_runners, shutdown) = tokio::sync::watch::channel(false);
    let runners = h.projections.clone().spawn(shutdown);
    let writing = tokio::spawn({
        let pool = h.pool.clone();
        async move { write_history(&pool, 2, 5000, seed ^ 0xb1e).await }
    });

    // Readers: every query answers, and no model ever goes back (a rebuild emptying the
    // live tables would show fewer audit rows, a checkpoint moving back an older state).
    let stop_reading = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let pool = h.pool.clone();
            let stop = stop_reading.clone();
            tokio::spawn(async move {
                let mut reads = 0_u64;
                let mut audit_total = 0;
                let mut checkpoints = vec![Checkpoint::START; PROJECTION_NAMES.len()];
                while !stop.load(Ordering::Relaxed) {
                    let client = pool.get().await.expect("connection");
                    let audit = list_audit(&client, &AuditFilter::default(), page(1, 20))
                        .await
                        .expect("audit list while rebuilding");
                    assert!(audit.total >= audit_total, "the audit log went back");
                    audit_total = audit.total;
                    list_servers(&client, &ServerFilter::default(), page(1, 20))
                        .await
                        .expect("server list while rebuilding");
                    list_catalog(&client, &CatalogFilter::default(), page(1, 20))
                        .await
                        .expect("catalog list while rebuilding");
                    list_users(&client, page(1, 20))
                        .await
                        .expect("users while rebuilding");
                    for (i, name) in PROJECTION_NAMES.iter().enumerate() {
                        let at = checkpoint_of(&client, name).await.expect("checkpoint");
                        // Feed order, not position order: a later transaction may hold
                        // a lower position.
                        assert!(at >= checkpoints[i], "{name} went back");
                        checkpoints[i] = at;
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();

    let mut rebuilt = Vec::new();
    while !writing.is_finished() || rebuilt.len() < PROJECTION_NAMES.len() {
        let name = PROJECTION_NAMES[rebuilt.len() % PROJECTION_NAMES.len()];
        let report = h
            .projections
            .rebuild_with(name, &RebuildOptions { batch_size: 200 })
            .await
            .unwrap_or_else(|e| panic!("rebuilding {name} beside writers: {e}"));
        rebuilt.push(report);
    }
    let (written, _) = writing.await.unwrap();
    h.catch_up().await;
    stop_reading.store(true, Ordering::Relaxed);
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.expect("a reader failed");
    }
    let _ = stop_runners.send(true);
    for runner in runners {
        runner.await.unwrap();
    }
    let at_swap: u64 = rebuilt.iter().map(|r| r.events_at_swap).sum();
    eprintln!(
        "{} rebuilds beside {written} written events and {reads} reads; {at_swap} events \
         applied inside swaps",
        rebuilt.len()
    );
    assert!(reads > 0);

    // No event lost or applied twice.
    let events = count(&h, "SELECT count(*) FROM events").await;
    assert_eq!(count(&h, "SELECT count(*) FROM audit_log").await, events);
    let live = snapshot(&h).await;
    assert_eq!(leftovers(&h).await, Vec::<String>::new());
    assert_eq!(
        schema_names(&h).await,
        names_before,
        "indexes and constraints keep their names"
    );

    // A cold rebuild of everything, nothing else running, ends with the same rows.
    for name in PROJECTION_NAMES {
        h.projections.rebuild(name).await.unwrap();
    }
    let cold = snapshot(&h).await;
    for ((table, a), b) in TABLES.iter().zip(&live).zip(&cold) {
        assert_eq!(a.len(), b.len(), "{table}: row counts differ");
        if let Some((x, y)) = a.iter().zip(b).find(|(x, y)| x != y) {
            panic!("{table}: the rebuilt-while-writing rows differ from a cold rebuild:\n{x}\n{y}");
        }
    }
}

#[tokio::test]
async fn an_interrupted_rebuild_leaves_the_live_model_and_the_next_one_cleans_up() {
    let h = Harness::new().await;
    write_history(&h.pool, 2, 3000, seed()).await;
    h.catch_up().await;
    let before = snapshot(&h).await;

    // Stopped partway through building the copy (small batches: many commits).
    let building = tokio::spawn({
        let projections = h.projections.clone();
        async move {
            projections
                .rebuild_with("audit", &RebuildOptions { batch_size: 20 })
                .await
        }
    });
    let copy = berth_projections::blue_green::rebuild_checkpoint("audit");
    loop {
        let progress = count(
            &h,
            &format!("SELECT count(*) FROM subscription_checkpoints WHERE name = '{copy}' AND global_position > 0"),
        )
        .await;
        if progress > 0 {
            break;
        }
        assert!(
            !building.is_finished(),
            "the rebuild finished before it could be interrupted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    building.abort();
    assert!(building.await.unwrap_err().is_cancelled());
    assert_eq!(snapshot(&h).await, before, "the live model is untouched");
    let statuses = berth_projections::status(&h.pool).await.unwrap();
    assert!(
        statuses.iter().any(|s| s.name == copy && s.position > 0),
        "status shows the abandoned copy: {statuses:?}"
    );

    let report = h.projections.rebuild("audit").await.unwrap();
    assert_eq!(
        report.events as usize,
        count(&h, "SELECT count(*) FROM events").await
    );
    assert_eq!(snapshot(&h).await, before);
    assert_eq!(leftovers(&h).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_swap_brings_the_copy_level_with_a_live_projection_that_got_ahead() {
    let h = Harness::new().await;
    let seed = seed();
    write_history(&h.pool, 2, 1000, seed).await;
    h.catch_up().await;
    for name in PROJECTION_NAMES {
        // While the finished copy waits for its swap, more events are written and the
        // live projection applies them; the copy has not seen them.
        let report = h
            .projections
            .rebuild_pausing(name, &RebuildOptions::default(), async {
                write_history(&h.pool, 1, 150, seed ^ name.len() as u64).await;
                h.projections.catch_up(name).await.unwrap();
            })
            .await
            .unwrap();
        assert!(report.events_at_swap > 0, "{name}: {report:?}");
    }
    h.catch_up().await;
    let swapped = snapshot(&h).await;
    assert_eq!(
        count(&h, "SELECT count(*) FROM audit_log").await,
        count(&h, "SELECT count(*) FROM events").await
    );
    for name in PROJECTION_NAMES {
        h.projections.rebuild(name).await.unwrap();
    }
    assert_eq!(snapshot(&h).await, swapped);
}
