//! What each `berth` subcommand does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use berth_infrastructure::checkpoint::{
    checkpoints, read_kept, verify_checkpoints, LogSigner, LATEST_CHECKPOINT_FILE, SIGNING_KEY_ENV,
    SIGNING_KEY_FILE,
};
use berth_infrastructure::migrations;
use berth_projections::{Projections, RebuildOptions, PROJECTION_NAMES};
use secrecy::SecretString;

use crate::cli::config::Settings;
use crate::cli::table::{Align, Table};
use crate::serve::database::{ClusterUse, OpenDatabase};
use crate::serve::server::start_server;

/// `berth serve`: runs until SIGINT or SIGTERM, then stops cleanly.
pub async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let running = start_server(settings.serve_config()).await?;
    shutdown_signal().await?;
    tracing::info!("shutting down");
    running.stop().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("received SIGTERM"),
        _ = interrupt.recv() => tracing::info!("received SIGINT"),
    }
    Ok(())
}

async fn open(settings: &Settings, usage: ClusterUse) -> anyhow::Result<OpenDatabase> {
    let url = settings.database_url.clone().map(SecretString::from);
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating {}", settings.data_dir.display()))?;
    OpenDatabase::open(url.as_ref(), Path::new(&settings.data_dir), usage).await
}

/// Runs `work` against the migrated database (the running Berth's embedded cluster
/// when one holds it), then stops the embedded cluster if this process started it,
/// whatever the outcome.
pub(crate) async fn with_database<T>(
    settings: &Settings,
    work: impl AsyncFnOnce(&OpenDatabase) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    with_database_as(settings, ClusterUse::Command, work).await
}

/// [`with_database`], using the embedded cluster as `usage` says: for what must not run
/// beside a live Berth.
pub(crate) async fn with_database_as<T>(
    settings: &Settings,
    usage: ClusterUse,
    work: impl AsyncFnOnce(&OpenDatabase) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let database = open(settings, usage).await?;
    let outcome = async {
        migrations::run(database.database())
            .await
            .context("applying migrations")?;
        work(&database).await
    }
    .await;
    database.close().await;
    outcome
}

/// `berth migrate`.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let database = open(settings, ClusterUse::Command).await?;
    let applied = migrations::run(database.database())
        .await
        .context("applying migrations");
    database.close().await;
    println!("applied {} migration(s)", applied?);
    Ok(())
}

/// `berth verify [--anchor FILE]...`: checks every event's hash chain, then holds the
/// log to its signed checkpoints (the stored ones, the newest one kept in the data
/// directory, and each anchor a person kept elsewhere); an error names the first break.
pub async fn verify(settings: &Settings, anchors: &[PathBuf]) -> anyhow::Result<()> {
    let mut kept = Vec::new();
    let latest = settings.data_dir.join(LATEST_CHECKPOINT_FILE);
    for path in anchors.iter().chain(latest.exists().then_some(&latest)) {
        kept.push(
            read_kept(path).with_context(|| format!("reading the anchor {}", path.display()))?,
        );
    }
    let signer = LogSigner::existing(&settings.data_dir).context("loading the log signing key")?;
    let (chains, signed) = with_database(settings, async |database| {
        let pool = database
            .database()
            .pool(1)
            .context("creating the connection pool")?;
        let outcome = async {
            let chains = berth_infrastructure::verify::verify(&pool)
                .await
                .context("reading the event log")?;
            let mut all = checkpoints(&pool.get().await?).await?;
            all.extend(kept);
            let signed = match (&signer, all.is_empty()) {
                (_, true) => None,
                (Some(signer), false) => Some(verify_checkpoints(&pool, signer, all).await?),
                (None, false) => anyhow::bail!(
                    "there are {} signed checkpoints but no signing key to check them with: \
                     set {SIGNING_KEY_ENV} or restore {}",
                    all.len(),
                    settings.data_dir.join(SIGNING_KEY_FILE).display()
                ),
            };
            anyhow::Ok((chains, signed))
        }
        .await;
        pool.close();
        outcome
    })
    .await?;
    if let Some(found) = chains.first_break {
        anyhow::bail!(
            "the hash chain breaks at {found} ({} events in {} streams checked)",
            chains.events,
            chains.streams
        );
    }
    println!(
        "verified {} events in {} streams: every hash chain is intact",
        chains.events, chains.streams
    );
    match signed {
        None => {
            println!("no signed checkpoint yet: the log's tail is covered by its hash chains only")
        }
        Some(report) => {
            if let Some(found) = report.first_break {
                anyhow::bail!("the log does not match a signed checkpoint: {found}");
            }
            if let Some(newest) = &report.newest {
                println!(
                    "{} signed checkpoints hold; the newest covers {} events up to position {} \
                     (signed {} by {}); {} events after it are covered by hash chains only",
                    report.checked,
                    newest.event_count,
                    newest.position,
                    newest.recorded_at,
                    newest.key_id,
                    report.events_after_newest
                );
            }
        }
    }
    Ok(())
}

/// `berth checkpoint`: signs the event log's head now, keeps it in the data directory
/// and prints it as JSON (the newest one when nothing new was appended): a checkpoint a
/// person can keep elsewhere and pass to `berth verify --anchor`.
pub async fn checkpoint(settings: &Settings) -> anyhow::Result<()> {
    let signer =
        LogSigner::from_env_or_file(&settings.data_dir).context("loading the log signing key")?;
    let newest = with_database(settings, async |database| {
        let pool = database
            .database()
            .pool(1)
            .context("creating the connection pool")?;
        let outcome = async {
            match crate::serve::checkpoints::record_and_keep(&pool, &signer, &settings.data_dir)
                .await?
            {
                Some(recorded) => anyhow::Ok(Some(recorded)),
                None => Ok(checkpoints(&pool.get().await?).await?.pop()),
            }
        }
        .await;
        pool.close();
        outcome
    })
    .await?;
    match newest {
        Some(checkpoint) => println!("{}", serde_json::to_string_pretty(&checkpoint)?),
        None => anyhow::bail!("the event log is empty: there is nothing to sign yet"),
    }
    Ok(())
}

/// `berth projections rebuild NAME`.
pub async fn rebuild(settings: &Settings, name: &str, batch_size: i64) -> anyhow::Result<()> {
    if !PROJECTION_NAMES.contains(&name) {
        anyhow::bail!(
            "unknown projection `{name}`; valid names are: {}",
            PROJECTION_NAMES.join(", ")
        );
    }
    let report = with_database(settings, async |database| {
        let db = database.database().clone();
        let pool = db.pool(4).context("creating the connection pool")?;
        let projections = Projections::new(db, pool.clone());
        let report = projections
            .rebuild_with(name, &RebuildOptions { batch_size })
            .await;
        pool.close();
        Ok(report?)
    })
    .await?;
    println!(
        "rebuilt {name}: {} events in {:.2} s ({:.0} events/s); swapped in at position {} \
         (live checkpoint held {} ms)",
        report.events,
        report.elapsed.as_secs_f64(),
        report.events_per_second(),
        report.position,
        report.swap.as_millis()
    );
    Ok(())
}

/// `berth projections status`.
pub async fn status(settings: &Settings, interval: f64, json: bool) -> anyhow::Result<()> {
    let statuses = with_database(settings, async |database| {
        let pool = database
            .database()
            .pool(2)
            .context("creating the connection pool")?;
        let statuses = if interval > 0.0 {
            berth_projections::sample_status(&pool, Duration::from_secs_f64(interval)).await
        } else {
            berth_projections::status(&pool).await
        };
        pool.close();
        Ok(statuses?)
    })
    .await?;
    if json {
        for s in statuses {
            println!("{}", serde_json::to_string(&s)?);
        }
        return Ok(());
    }
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("POSITION", Align::Right),
        ("HEAD", Align::Right),
        ("LAG (s)", Align::Right),
        ("EVENTS/s", Align::Right),
    ]);
    for s in statuses {
        let rate = s
            .events_per_second
            .map_or_else(|| "-".to_string(), |r| format!("{r:.0}"));
        table.row(vec![
            s.name,
            s.position.to_string(),
            s.head.to_string(),
            format!("{:.1}", s.lag_seconds),
            rate,
        ]);
    }
    table.write(&mut std::io::stdout().lock())?;
    Ok(())
}
