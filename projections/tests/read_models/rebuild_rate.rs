//! The rebuild rate as a figure: every projection rebuilt over at least 200,000 events,
//! beside the rate of reading the same rows with one plain SELECT on the same server in
//! the same run. Printed (run with `--nocapture`), never asserted: timing depends on the
//! machine; what is asserted is that every rebuild applied every event.

use std::time::Instant;

use berth_projections::PROJECTION_NAMES;
use futures_util::{pin_mut, TryStreamExt};

use crate::kit::Harness;
use crate::sim::write_volume;

/// Rows per second of `SELECT *` over the whole log in feed order, read to the end.
async fn plain_select_rate(h: &Harness) -> (u64, f64) {
    let client = h.client().await;
    let started = Instant::now();
    let rows = client
        .query_raw(
            "SELECT * FROM events ORDER BY transaction_id, global_position",
            std::iter::empty::<i64>(),
        )
        .await
        .expect("select");
    pin_mut!(rows);
    let mut read = 0_u64;
    while let Some(row) = rows.try_next().await.expect("row") {
        assert!(!row.is_empty());
        read += 1;
    }
    (read, read as f64 / started.elapsed().as_secs_f64())
}

#[tokio::test]
async fn rebuild_rate_over_200k_events_beside_a_plain_select() {
    let servers = std::env::var("BERTH_REBUILD_SERVERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let h = Harness::new().await;
    let written = write_volume(&h.pool, servers).await;
    assert!(servers < 20_000 || written >= 200_000, "{written} events");
    h.client()
        .await
        .batch_execute("ANALYZE events")
        .await
        .unwrap();

    let (read, select_rate) = plain_select_rate(&h).await;
    assert_eq!(read as usize, written);
    let mut lines = vec![format!(
        "{:<10} {:>9} events  {:>9.0} rows/s   (baseline)",
        "SELECT", read, select_rate
    )];
    for name in PROJECTION_NAMES {
        let report = h.projections.rebuild(name).await.unwrap();
        assert_eq!(
            report.events as usize, written,
            "{name} applied every event"
        );
        let rate = report.events_per_second();
        lines.push(format!(
            "{:<10} {:>9} events  {:>9.0} events/s  {:>5.1}% of SELECT  swap {} ms",
            name,
            report.events,
            rate,
            100.0 * rate / select_rate,
            report.swap.as_millis()
        ));
    }
    let live: i64 = h
        .client()
        .await
        .query_one("SELECT count(*) FROM servers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(live as usize, servers);
    eprintln!("rebuild rate over {written} events:\n{}", lines.join("\n"));
}
