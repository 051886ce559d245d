//! Berth's benchmark suite. Each scenario measures Berth and, in the same run on the
//! same PostgreSQL server, the baseline it is judged against: raw INSERTs for commands,
//! cqrs-es's own PostgreSQL store as the peer, a plain SELECT for rebuilds, `docker run`
//! for starting servers. Figures are printed as a table and as JSON lines.

#![warn(missing_docs)]

pub mod load;
pub mod peer;
pub mod report;
pub mod scenarios;
pub mod serve;
pub mod server;
pub mod stats;
pub mod volume;
pub mod workload;

use std::path::PathBuf;
use std::time::Duration;

pub use report::{Figure, Report, Target};
pub use server::{BenchDatabase, BenchServer};

/// How big a run is.
#[derive(Clone, Debug)]
pub struct Scale {
    /// Concurrent clients of the command scenarios.
    pub clients: Vec<usize>,
    /// How long each command run lasts.
    pub command_run: Duration,
    /// Events written for the rebuild and query scenarios.
    pub events: usize,
    /// Subscriber counts of the live-latency scenario.
    pub subscribers: Vec<usize>,
    /// Commands whose delivery is timed in each live-latency run.
    pub live_commands: usize,
    /// Requests timed for each query.
    pub query_samples: usize,
    /// Servers started in the runtime scenario.
    pub runtime_servers: usize,
    /// Active workers killed in the replicas scenario.
    pub failover_kills: usize,
}

impl Scale {
    /// The published figures: 1/4/16/64 clients, 1,000,000 events, 1,000 subscribers.
    pub fn full() -> Self {
        Self {
            clients: vec![1, 4, 16, 64],
            command_run: Duration::from_secs(4),
            events: 1_000_000,
            subscribers: vec![1, 100, 1000],
            live_commands: 200,
            query_samples: 500,
            runtime_servers: 10,
            failover_kills: 10,
        }
    }

    /// A smoke run: every scenario and code path, in seconds; its figures mean little.
    pub fn quick() -> Self {
        Self {
            clients: vec![1, 4],
            command_run: Duration::from_millis(300),
            events: 20_000,
            subscribers: vec![1, 10],
            live_commands: 10,
            query_samples: 20,
            runtime_servers: 2,
            failover_kills: 2,
        }
    }
}

/// What a scenario is given.
pub struct Bench<'a> {
    /// The server everything is measured on.
    pub server: &'a BenchServer,
    /// Where figures go.
    pub report: &'a Report,
    /// How big the run is.
    pub scale: &'a Scale,
    /// The `berth` binary, for scenarios that measure `berth serve` as users run it.
    pub berth_binary: Option<PathBuf>,
}

/// The scenarios, in the order they run.
pub const SCENARIOS: [&str; 10] = [
    "commands",
    "http",
    "rebuild",
    "queries",
    "live",
    "memory",
    "runtime",
    "gateway",
    "registered_api",
    "replicas",
];

/// Runs the scenarios named in `only` (all when empty), in [`SCENARIOS`] order. A
/// scenario that fails is reported and the others still run; the names of the failed
/// ones are returned.
pub async fn run(bench: &Bench<'_>, only: &[String]) -> Vec<String> {
    let mut failed = Vec::new();
    for name in SCENARIOS {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let result = scenarios::run(name, bench).await;
        if let Err(e) = result {
            bench.report.note(name, &format!("FAILED: {e:#}"));
            failed.push(name.to_owned());
        }
    }
    // The data set the rebuild and query scenarios share outlives each of them.
    if let Err(e) = volume::release().await {
        bench
            .report
            .note("volume", &format!("FAILED to drop the data set: {e:#}"));
    }
    failed
}

/// The machine, for the report: CPU model, cores and memory.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024 / 1024);
    format!("{model}, {cores} cores, {mem_gib} GiB")
}
