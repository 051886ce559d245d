//! Rebuild throughput: every projection rebuilt blue-green from the first event of the
//! run's data set ([`crate::volume`], `Scale.events` events), beside the rate at which
//! the same server streams the same rows to a client with one plain
//! `SELECT * FROM events ORDER BY transaction_id, global_position` (the baseline, read
//! again just before each rebuild so each pair shares the machine's state).
//!
//! Each projection gets three figures: its events/s against the 50,000 events/s goal,
//! the same events/s as a share of the SELECT's rows/s against the 25% goal, and how
//! long its swap held the live checkpoint, beside one durable one-row transaction.

use std::time::Instant;

use anyhow::Context;
use berth_projections::{Projections, PROJECTION_NAMES};
use deadpool_postgres::Pool;
use futures_util::{pin_mut, TryStreamExt};

use crate::report::{Figure, Target};
use crate::stats::{rate, Latencies};
use crate::{volume, Bench};

const SCENARIO: &str = "rebuild";

/// The baseline: every event in feed order, streamed and counted.
pub const PLAIN_SELECT: &str = "SELECT * FROM events ORDER BY transaction_id, global_position";

/// Durable one-row transactions timed for the swap's baseline.
const COMMIT_SAMPLES: usize = 20;

/// Runs the scenario.
pub async fn run(bench: &Bench<'_>) -> anyhow::Result<()> {
    let data = volume::dataset(bench).await?;
    let db = data.database().database();
    let pool = db.pool(4)?;
    let projections = Projections::new(db, pool.clone());
    let result = measure(bench, &pool, projections, data.written.events).await;
    pool.close();
    result
}

async fn measure(
    bench: &Bench<'_>,
    pool: &Pool,
    projections: Projections,
    events: usize,
) -> anyhow::Result<()> {
    // One unmeasured pass, so the first baseline reads the same warm cache as the rest.
    plain_select(pool).await?;
    let commit = durable_commit_ms(pool).await?;
    let commit_label = "one durable 1-row transaction, p50";
    for name in PROJECTION_NAMES {
        let (rows, select_rate) = plain_select(pool).await?;
        anyhow::ensure!(
            rows == events as u64,
            "the plain SELECT read {rows} rows of {events}"
        );
        let report = projections
            .rebuild(name)
            .await
            .with_context(|| format!("rebuilding {name}"))?;
        anyhow::ensure!(
            report.events == events as u64,
            "rebuilding {name} applied {} events of {events}",
            report.events
        );
        let per_second = report.events_per_second();
        let baseline = "plain SELECT, rows/s";
        bench.report.add(
            Figure::new(
                SCENARIO,
                format!("rebuild {name}: events/s"),
                "events/s",
                per_second,
                report.events,
            )
            .against(baseline, select_rate)
            .target(Target::AtLeast(50_000.0)),
        );
        bench.report.add(
            Figure::new(
                SCENARIO,
                format!("rebuild {name}: share of the SELECT"),
                "events/s",
                per_second,
                report.events,
            )
            .against(baseline, select_rate)
            .target(Target::RatioAtLeast(0.25)),
        );
        bench.report.add(
            Figure::new(
                SCENARIO,
                format!("rebuild {name}: swap"),
                "ms",
                report.swap.as_secs_f64() * 1000.0,
                1,
            )
            .against(commit_label, commit),
        );
    }
    Ok(())
}

/// Streams [`PLAIN_SELECT`] to the end; returns the rows read and rows per second.
async fn plain_select(pool: &Pool) -> anyhow::Result<(u64, f64)> {
    let client = pool.get().await?;
    let started = Instant::now();
    let rows = client
        .query_raw(PLAIN_SELECT, std::iter::empty::<i64>())
        .await
        .context("the plain SELECT")?;
    pin_mut!(rows);
    let mut read = 0_u64;
    while let Some(row) = rows.try_next().await? {
        // Touch the row, as any reader would.
        if !row.is_empty() {
            read += 1;
        }
    }
    Ok((read, rate(read, started.elapsed())))
}

/// The median time of a durable transaction updating one row: the least a swap (which
/// also renames tables and moves a checkpoint) can take.
async fn durable_commit_ms(pool: &Pool) -> anyhow::Result<f64> {
    let mut client = pool.get().await?;
    client
        .batch_execute(
            "CREATE TABLE berth_bench_commit (id int PRIMARY KEY, n int); \
             INSERT INTO berth_bench_commit VALUES (1, 0)",
        )
        .await?;
    let mut latencies = Latencies::new();
    for _ in 0..COMMIT_SAMPLES {
        let started = Instant::now();
        let tx = client.transaction().await?;
        tx.execute("UPDATE berth_bench_commit SET n = n + 1 WHERE id = 1", &[])
            .await?;
        tx.commit().await?;
        latencies.record(started.elapsed());
    }
    client
        .batch_execute("DROP TABLE berth_bench_commit")
        .await?;
    Ok(latencies.percentile_ms(50.0))
}
