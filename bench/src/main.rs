//! `berth-bench`: runs Berth's benchmark suite and prints a table, then one JSON line
//! per figure.

use std::path::PathBuf;
use std::process::ExitCode;

use berth_bench::{Bench, BenchServer, Report, Scale, SCENARIOS};
use clap::Parser;

/// Measures Berth beside same-run baselines on one PostgreSQL server.
#[derive(Parser, Debug)]
#[command(name = "berth-bench", version)]
struct Args {
    /// A PostgreSQL server to measure on (a database per scenario is created and
    /// dropped); a throwaway durable cluster is started when unset.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// A smoke run: every scenario, small sizes, a few seconds each.
    #[arg(long)]
    quick: bool,
    /// Only these scenarios (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(SCENARIOS))]
    only: Vec<String>,
    /// The `berth` binary measured as a server; by default the one beside this binary.
    #[arg(long)]
    berth: Option<PathBuf>,
    /// Client counts of the command scenarios, instead of the scale's (comma-separated).
    #[arg(long, value_delimiter = ',')]
    clients: Vec<usize>,
    /// Also write the JSON lines to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("berth-bench: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut scale = if args.quick {
        Scale::quick()
    } else {
        Scale::full()
    };
    if !args.clients.is_empty() {
        scale.clients = args.clients.clone();
    }
    let berth_binary = args.berth.or_else(beside_this_binary);
    let server = BenchServer::start(args.database_url.as_deref()).await?;
    println!("# berth-bench {}", env!("CARGO_PKG_VERSION"));
    println!("# machine: {}", berth_bench::machine());
    println!("# postgres: {}", server.describe().await?);
    println!("# scale: {scale:?}");
    let report = Report::new(true);
    let bench = Bench {
        server: &server,
        report: &report,
        scale: &scale,
        berth_binary,
    };
    // Interrupted, the run is dropped (its `berth serve` children are stopped as they
    // drop) and the throwaway cluster is still stopped below.
    let failed = tokio::select! {
        failed = berth_bench::run(&bench, &args.only) => Some(failed),
        () = interrupted() => None,
    };
    server.stop().await?;
    let Some(failed) = failed else {
        eprintln!("berth-bench: interrupted; everything it started is stopped");
        return Ok(ExitCode::from(130));
    };
    let lines = report.json_lines();
    println!();
    print!("{lines}");
    if let Some(path) = args.json {
        std::fs::write(&path, &lines)?;
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("berth-bench: failed scenarios: {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

/// `berth` in the directory of this binary, where cargo builds both.
fn beside_this_binary() -> Option<PathBuf> {
    let path = std::env::current_exe().ok()?.parent()?.join("berth");
    path.is_file().then_some(path)
}
