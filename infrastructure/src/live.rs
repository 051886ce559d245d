//! One follower of the feed per process, fanning every new event out to the live event
//! streams (SSE, WebSocket) over a bounded broadcast channel.
//!
//! Connections never read the database once they are live: each catches up from the
//! store on its own, then takes what this follower broadcasts. Sending never waits for a
//! receiver, so neither writers nor other streams are slowed by a slow one: a receiver
//! that falls more than the channel's capacity behind is told so
//! ([`broadcast::error::RecvError::Lagged`]) on its next receive.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::db::Database;
use crate::feed::{self, Checkpoint, FeedFilter, StoredEvent};
use crate::notify::EventNotifier;
use crate::StoreError;

/// Whether any stored event is not readable yet, its transaction being at or above the
/// oldest one still open in the cluster.
const HELD_BACK: &str = "SELECT EXISTS (SELECT 1 FROM events \
     WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot()))";

/// The first pause before looking again for events held back; it doubles up to the poll
/// interval while they stay held back.
const FIRST_HELD_BACK_RETRY: Duration = Duration::from_millis(5);

/// How the fan-out follows the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutOptions {
    /// Events the broadcast channel holds for its slowest receiver.
    pub capacity: usize,
    /// Events read from the store per query.
    pub batch_size: i64,
    /// The longest wait between reads when no append is announced.
    pub poll_interval: Duration,
}

impl Default for FanoutOptions {
    fn default() -> Self {
        Self {
            capacity: 4096,
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// The process's single follower of the feed, as its subscribers see it: cheap to clone.
#[derive(Clone)]
pub struct EventFanout {
    sender: broadcast::Sender<Arc<StoredEvent>>,
    closing: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for EventFanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventFanout")
            .field("receivers", &self.sender.receiver_count())
            .field("closing", &*self.closing.borrow())
            .finish()
    }
}

impl EventFanout {
    /// Reads the feed's head, then follows the feed from there in the background until
    /// `shutdown` turns `true`. The head is read before this returns, so a subscriber
    /// that subscribes afterwards and then catches up from the store misses nothing:
    /// whatever the store did not show it yet will be broadcast.
    pub async fn start(
        db: &Database,
        pool: Pool,
        options: FanoutOptions,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Self, JoinHandle<()>), StoreError> {
        // Listening before reading the head: an append right after it wakes us at once.
        let notifier = EventNotifier::listen(db).await?;
        let head = feed::head_checkpoint(&pool.get().await?).await?;
        let (sender, _) = broadcast::channel(options.capacity.max(1));
        let (closing, _) = watch::channel(false);
        let fanout = Self {
            sender,
            closing: Arc::new(closing),
        };
        let follower = Follower {
            fanout: fanout.clone(),
            pool,
            notifier,
            at: head,
            options,
        };
        tracing::info!(position = head.position, "live event fan-out started");
        Ok((fanout, tokio::spawn(follower.run(shutdown))))
    }

    /// A receiver of every event broadcast from now on, in feed order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.sender.subscribe()
    }

    /// How many receivers are subscribed.
    pub fn receiver_count(&self) -> usize {
        self.sender.receiver_count()
    }

    /// Tells every live stream to end (Berth is stopping), so that open streams do not
    /// hold up the HTTP server's graceful shutdown.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Turns `true` once the streams are told to end (see [`EventFanout::close`]), or
    /// once the follower stopped.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }
}

struct Follower {
    fanout: EventFanout,
    pool: Pool,
    notifier: EventNotifier,
    at: Checkpoint,
    options: FanoutOptions,
}

impl Follower {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut retry = FIRST_HELD_BACK_RETRY;
        loop {
            let held_back = tokio::select! {
                held_back = self.broadcast_new() => held_back,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            // An event held back behind an older open transaction is announced once, when
            // it is appended: look again soon rather than at the next announcement.
            let wait = if held_back {
                let wait = retry;
                retry = (retry * 2).min(self.options.poll_interval);
                wait
            } else {
                retry = FIRST_HELD_BACK_RETRY;
                self.options.poll_interval
            };
            tokio::select! {
                _ = self.notifier.wait(wait) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        self.fanout.close();
        tracing::info!("live event fan-out stopped");
    }

    /// Broadcasts everything readable after `at`, batch by batch; then tells whether
    /// stored events are still held back. A failed read is logged and retried at the
    /// next wake-up: `at` only moves past what was sent.
    async fn broadcast_new(&mut self) -> bool {
        loop {
            let events = match self.read().await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "live event fan-out could not read the feed; retrying");
                    return false;
                }
            };
            let full = i64::try_from(events.len()).unwrap_or(i64::MAX) >= self.options.batch_size;
            for event in events {
                self.at = event.checkpoint();
                // An error only means nobody is listening right now.
                let _ = self.fanout.sender.send(Arc::new(event));
            }
            if !full {
                return self.held_back().await.unwrap_or(false);
            }
        }
    }

    async fn held_back(&self) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(HELD_BACK).await?;
        Ok(client.query_one(&statement, &[]).await?.try_get(0)?)
    }

    async fn read(&self) -> Result<Vec<StoredEvent>, StoreError> {
        let client = self.pool.get().await?;
        feed::read_after(
            &client,
            self.at,
            self.options.batch_size,
            &FeedFilter::default(),
        )
        .await
    }
}
