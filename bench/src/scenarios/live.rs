//! Scenario `live`: not built yet.

use crate::Bench;

/// Runs the scenario.
pub async fn run(bench: &Bench<'_>) -> anyhow::Result<()> {
    bench.report.note("live", "not built yet");
    Ok(())
}
