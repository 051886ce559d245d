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

/// How long the checkpoint signed at stop may wait for the last event to settle.
const LAST_SETTLE: Duration = Duration::from_secs(3);

/// Signs a checkpoint that covers the last event written before the stop. It runs after
/// this Berth's projectors and followers have ended, so none of their transactions is
/// open; a checkpoint covers only settled events (below every open transaction), and
/// another process on the same database may still hold one: it is signed again until it
/// reaches the head, for a few seconds at most.
async fn sign_the_last_event(pool: &Pool, signer: &LogSigner, data_dir: &Path) {
    let head = match pool.get().await {
        Ok(client) => berth_infrastructure::feed::head_position(&client)
            .await
            .ok(),
        Err(_) => None,
    };
    let deadline = tokio::time::Instant::now() + LAST_SETTLE;
    let path = data_dir.join(LATEST_CHECKPOINT_FILE);
    loop {
        if let Err(e) = record_and_keep(pool, signer, data_dir).await {
            tracing::warn!(error = %format!("{e:#}"), "no checkpoint at stop");
            return;
        }
        let kept = read_kept(&path).ok().map(|c| c.position);
        let covered = match (head, kept) {
            (Some(head), Some(position)) => position >= head,
            (Some(head), None) => head == 0,
            // The head cannot be read: there is nothing to wait for.
            (None, _) => true,
        };
        if covered || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
            if stopping {
                sign_the_last_event(&pool, &signer, &data_dir).await;
                return;
            }
            if let Err(e) = record_and_keep(&pool, &signer, &data_dir).await {
                tracing::warn!(error = %format!("{e:#}"), "no checkpoint this time");
            }
        }
    })
}
