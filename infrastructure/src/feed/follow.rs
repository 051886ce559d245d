//! The one way to follow the feed. Every consumer runs `follow`: passes over the feed
//! until one finds nothing more to read, then a `Wakeup` wait (an announced append, or
//! the poll interval), until shutdown. Three
//! kinds of consumer are built on it:
//!
//! - a *projector* ([`super::projector`]) applies each batch and saves its checkpoint in
//!   one transaction: exactly once, and its errors end the run (its supervisor restarts
//!   it);
//! - a *follower* ([`super::follower`]) does work outside the database, then saves its
//!   checkpoint: at least once, so its handler must be idempotent, and its errors are
//!   logged and retried;
//! - the *fan-out* ([`super::fanout`]) broadcasts every event to the live streams of its
//!   process from an in-memory checkpoint.
//!
//! A projector and a follower hold their subscription's advisory lock ([`super::lock`])
//! while they run, so exactly one process drives each; the fan-out runs in every process.

use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;

use super::wake::Wakeup;
use crate::StoreError;

/// How a consumer reads the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderOptions {
    /// Events per read (and per transaction, for a projector).
    pub batch_size: i64,
    /// The longest wait between reads when no append is announced.
    pub poll_interval: Duration,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// When shutdown may stop a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Only between passes: a projector's batch transaction always ends (commits or
    /// fails) before it stops, so no transaction of its is left open to hold the feed
    /// back from whatever runs last (the final signed checkpoint).
    BetweenPasses,
    /// Also in the middle of a pass: a follower's work is repeated at the next start
    /// (at least once), and the fan-out has nothing to finish.
    Anytime,
}

impl ReaderOptions {
    /// What a side-effecting follower reads with: smaller batches than a projector's, as
    /// each event may start work outside the database before the checkpoint moves.
    pub fn for_followers() -> Self {
        Self {
            batch_size: 100,
            ..Self::default()
        }
    }
}

/// What one pass over the feed found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// It read a full batch: there may be more, look again at once.
    More,
    /// It read everything readable now: wait for the next wake-up.
    CaughtUp,
}

/// Runs `pass` until it catches up, waits for `wakeup`, and again, until `shutdown`
/// completes (then `Ok`, where `stop` allows) or a pass fails (then that error).
pub(crate) async fn follow<P, F>(
    mut wakeup: Wakeup,
    stop: Stop,
    shutdown: impl Future<Output = ()>,
    mut pass: P,
) -> Result<(), StoreError>
where
    P: FnMut() -> F,
    F: Future<Output = Result<Pass, StoreError>>,
{
    tokio::pin!(shutdown);
    loop {
        let found = match stop {
            Stop::Anytime => tokio::select! {
                found = pass() => found?,
                () = &mut shutdown => return Ok(()),
            },
            Stop::BetweenPasses => pass().await?,
        };
        if found == Pass::More {
            // Between passes: a shutdown that came meanwhile ends it here.
            if stop == Stop::BetweenPasses && (&mut shutdown).now_or_never().is_some() {
                return Ok(());
            }
            continue;
        }
        tokio::select! {
            () = wakeup.wait() => {}
            () = &mut shutdown => return Ok(()),
        }
    }
}

/// [`Pass::More`] when `read` events filled a batch of `batch_size`.
pub(crate) fn pass_after(read: usize, batch_size: i64) -> Pass {
    if i64::try_from(read).unwrap_or(i64::MAX) >= batch_size {
        Pass::More
    } else {
        Pass::CaughtUp
    }
}
