//! Scenario `queries`: not built yet.

use crate::Bench;

/// Runs the scenario.
pub async fn run(bench: &Bench<'_>) -> anyhow::Result<()> {
    bench.report.note("queries", "not built yet");
    Ok(())
}
