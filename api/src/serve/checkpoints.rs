//! Signing the event log's head in the background: every `checkpoint_interval` when
//! something was appended, and once more when Berth stops. The newest checkpoint is also
//! kept in the data directory, where the database cannot take it back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use berth_infrastructure::checkpoint::{
    holds, keep, read_kept, record_checkpoint, LogSigner, SignedCheckpoint, LATEST_CHECKPOINT_FILE,
};
use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Signs the head and keeps it in `data_dir`; `None` when nothing new was appended.
/// Refuses while the table no longer holds the checkpoint kept in `data_dir`: the log
/// was tampered with, and signing on would paper over it.
pub async fn record_and_keep(
    pool: &Pool,
    signer: &LogSigner,
    data_dir: &Path,
) -> anyhow::Result<Option<SignedCheckpoint>> {
    let path = data_dir.join(LATEST_CHECKPOINT_FILE);
    if path.exists() {
        let kept = read_kept(&path)?;
        if !holds(&pool.get().await?, &kept).await? {
            anyhow::bail!(
                "the checkpoints table no longer holds the checkpoint kept in {} (position {}): \
                 nothing more is signed; run `berth verify`",
                path.display(),
                kept.position
            );
        }
    }
    let recorded = record_checkpoint(pool, signer)
        .await
        .context("signing a checkpoint of the event log")?;
    if let Some(checkpoint) = &recorded {
        keep(&path, checkpoint).with_context(|| format!("keeping {}", path.display()))?;
        tracing::info!(
            position = checkpoint.position,
            events = checkpoint.event_count,
            key_id = %checkpoint.key_id,
            "signed a checkpoint of the event log"
        );
    }
    Ok(recorded)
}

/// Starts the checkpointer; it signs a last checkpoint when `shutdown` turns true.
pub fn spawn_checkpointer(
    pool: Pool,
    signer: LogSigner,
    data_dir: PathBuf,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = ticks.tick() => false,
                _ = shutdown.wait_for(|s| *s) => true,
            };
            if let Err(e) = record_and_keep(&pool, &signer, &data_dir).await {
                tracing::warn!(error = %format!("{e:#}"), "no checkpoint this time");
            }
            if stopping {
                return;
            }
        }
    })
}
