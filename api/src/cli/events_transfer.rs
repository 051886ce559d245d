//! `berth events export` and `berth events import`: the event log as JSON Lines, out of
//! one store and into an empty one (moving to another PostgreSQL, recovering from a
//! copy), keeping positions, ids, metadata and hashes; with `--keys`, the wrapped data
//! keys travel in a second file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_infrastructure::transfer::{
    export_data_keys, export_events, import_events, DataKeys, ExportReport, ImportOptions,
};
use deadpool_postgres::Pool;
use tokio::io::{AsyncBufRead, AsyncWrite, BufReader, BufWriter};

use crate::cli::commands::with_database;
use crate::cli::config::Settings;
use crate::serve::bulk::BULK_OPERATIONS;
use crate::serve::runtimes::PROCESS_MANAGER;

/// Subscribers that act outside the database: after an import they start at its last
/// event instead of acting on history again.
const SIDE_EFFECT_SUBSCRIBERS: [&str; 2] = [PROCESS_MANAGER, BULK_OPERATIONS];

/// `berth events export` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Only events after the event at this position, in feed order (0: every event).
    #[arg(long, default_value_t = 0, value_name = "POSITION")]
    pub after: i64,
    /// Write to this file instead of standard output (replaced if it exists; removed
    /// again if the export fails).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write every owner's data key (wrapped by the master key, which stays in the
    /// data directory) to this file, for the imported store's secrets and API keys.
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
}

/// `berth events import` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// Read from this file instead of standard input.
    #[arg(long, short, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Also import the data keys `berth events export --keys` wrote (the store must have
    /// none); copy the master key files of the exporting data directory too.
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
}

/// `berth events export`: writes the events after `--after` as JSON Lines and reports
/// how many on standard error (standard output may be the export itself).
pub async fn export(settings: &Settings, args: &ExportArgs) -> anyhow::Result<()> {
    let (report, keys) = with_database(settings, async |database| {
        let pool = database
            .database()
            .pool(1)
            .context("creating the connection pool")?;
        let outcome = async {
            let report = match &args.output {
                None => write_to(&pool, args.after, tokio::io::stdout()).await?,
                Some(path) => export_to_file(&pool, args.after, path).await?,
            };
            // After the events: a key created meanwhile is carried, never one missing
            // for an exported secret.
            let keys = match &args.keys {
                Some(path) => Some(export_keys_to_file(&pool, path).await?),
                None => None,
            };
            Ok((report, keys))
        }
        .await;
        pool.close();
        outcome
    })
    .await?;
    match report.last_position {
        Some(last) => eprintln!("exported {} events, last position {last}", report.events),
        None => eprintln!("exported 0 events"),
    }
    if let Some(keys) = keys {
        eprintln!("exported {keys} data keys");
    }
    Ok(())
}

async fn export_keys_to_file(pool: &Pool, path: &Path) -> anyhow::Result<u64> {
    let mut file = BufWriter::new(
        crate::owner_only_file::create(path)
            .map(tokio::fs::File::from_std)
            .with_context(|| format!("creating {}", path.display()))?,
    );
    export_data_keys(pool, &mut file)
        .await
        .with_context(|| format!("exporting the data keys to {}", path.display()))
}

async fn export_to_file(pool: &Pool, after: i64, path: &Path) -> anyhow::Result<ExportReport> {
    let file = crate::owner_only_file::create(path)
        .map(tokio::fs::File::from_std)
        .with_context(|| format!("creating {}", path.display()))?;
    let outcome = write_to(pool, after, file).await;
    if outcome.is_err() {
        // A truncated file must not pass for an export.
        if let Err(e) = tokio::fs::remove_file(path).await {
            tracing::warn!(path = %path.display(), error = %e, "could not remove the incomplete export");
        }
    }
    outcome.with_context(|| format!("exporting to {}", path.display()))
}

async fn write_to(
    pool: &Pool,
    after: i64,
    out: impl AsyncWrite + Unpin,
) -> anyhow::Result<ExportReport> {
    let mut out = BufWriter::new(out);
    Ok(export_events(pool, after, &mut out).await?)
}

/// `berth events import`: writes an export into the (empty) store and prints
/// `imported N events, last position P`.
pub async fn import(settings: &Settings, args: &ImportArgs) -> anyhow::Result<()> {
    let mut options = ImportOptions {
        skip_history: SIDE_EFFECT_SUBSCRIBERS.map(str::to_owned).to_vec(),
        data_keys: None,
    };
    if let Some(path) = &args.keys {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let keys = DataKeys::read(BufReader::new(file))
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        options.data_keys = Some(keys);
    }
    let input: Box<dyn AsyncBufRead + Unpin + Send> = match &args.input {
        None => Box::new(BufReader::new(tokio::io::stdin())),
        Some(path) => Box::new(BufReader::new(
            tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening {}", path.display()))?,
        )),
    };
    let report = with_database(settings, async |database| {
        let pool = database
            .database()
            .pool(1)
            .context("creating the connection pool")?;
        let outcome = import_events(&pool, input, &options).await;
        pool.close();
        Ok(outcome?)
    })
    .await
    .context("importing the event log")?;
    if let Some(keys) = &options.data_keys {
        println!("imported {} data keys", keys.len());
    }
    match report.last_position {
        Some(last) => println!("imported {} events, last position {last}", report.events),
        None => println!("imported 0 events"),
    }
    Ok(())
}
