//! Read-your-writes: waiting, bounded, until a projection has applied a given event, or
//! until the event feed itself has released it.

use std::time::Duration;

use berth_infrastructure::feed::checkpoints::checkpoint_of;
use berth_infrastructure::feed::{has_reached, head_checkpoint};
use berth_infrastructure::StoreError;
use deadpool_postgres::Pool;
use tokio::time::Instant;

/// How often the checkpoint is looked at while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Whether subscription `name` has applied the event at global `position`, waiting up to
/// `timeout` for it: `true` as soon as it has, `false` when the time is up. Works for any
/// subscription with a checkpoint, on any replica, since it reads the stored checkpoint.
pub async fn wait_until_reached(
    pool: &Pool,
    name: &str,
    position: i64,
    timeout: Duration,
) -> Result<bool, StoreError> {
    wait(pool, Some(name), position, timeout).await
}

/// Whether the event feed shows the event at global `position` (its transaction and
/// every older one have ended, so a feed reader sees it), waiting up to `timeout`.
pub async fn wait_until_released(
    pool: &Pool,
    position: i64,
    timeout: Duration,
) -> Result<bool, StoreError> {
    wait(pool, None, position, timeout).await
}

/// Waits for subscription `name`'s checkpoint, or the feed's head when `None`.
async fn wait(
    pool: &Pool,
    name: Option<&str>,
    position: i64,
    timeout: Duration,
) -> Result<bool, StoreError> {
    let deadline = Instant::now() + timeout;
    loop {
        {
            // The connection goes back to the pool between polls, so many waiting
            // readers do not starve it.
            let client = pool.get().await?;
            let checkpoint = match name {
                Some(name) => checkpoint_of(&client, name).await?,
                None => head_checkpoint(&client).await?,
            };
            if has_reached(&client, checkpoint, position).await? {
                return Ok(true);
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}
