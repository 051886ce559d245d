//! One module per scenario; each records its figures in the run's [`Report`].
//!
//! [`Report`]: crate::Report

pub mod commands;
pub mod gateway;
pub mod http;
pub mod live;
pub mod memory;
pub mod queries;
pub mod rebuild;
pub mod registered_api;
pub mod replicas;
pub mod runtime;

use crate::Bench;

/// Runs scenario `name` (one of [`crate::SCENARIOS`]).
pub async fn run(name: &str, bench: &Bench<'_>) -> anyhow::Result<()> {
    match name {
        "commands" => commands::run(bench).await,
        "http" => http::run(bench).await,
        "rebuild" => rebuild::run(bench).await,
        "queries" => queries::run(bench).await,
        "live" => live::run(bench).await,
        "memory" => memory::run(bench).await,
        "runtime" => runtime::run(bench).await,
        "gateway" => gateway::run(bench).await,
        "registered_api" => registered_api::run(bench).await,
        "replicas" => replicas::run(bench).await,
        other => anyhow::bail!("no scenario is called {other}"),
    }
}
