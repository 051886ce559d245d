//! One follower of the feed per process, fanning every new event out to the live event
//! streams (SSE, WebSocket) over a bounded broadcast channel.
//!
//! Connections never read the database once they are live: each catches up from the
//! store on its own, then takes what this follower broadcasts. Sending never waits for a
//! receiver, so neither writers nor other streams are slowed by a slow one: a receiver
//! that falls more than the channel's capacity behind is told so
//! ([`broadcast::error::RecvError::Lagged`]) on its next receive.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::follow::{follow, pass_after, Pass, ReaderOptions, Stop};
use super::wake::Wakeup;
use super::{head_checkpoint, Checkpoint, StoredEvent};
use crate::db::Database;
use crate::StoreError;

/// How the fan-out follows the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutOptions {
    /// Events the broadcast channel holds for its slowest receiver.
    pub capacity: usize,
    /// How it reads the feed.
    pub reader: ReaderOptions,
}

impl Default for FanoutOptions {
    fn default() -> Self {
        Self {
            capacity: 4096,
            reader: ReaderOptions::default(),
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
        let wakeup = Wakeup::listen(db, options.reader.poll_interval)
            .await?
            .soon_while_held_back(pool.clone());
        let head = head_checkpoint(&pool.get().await?).await?;
        let (sender, _) = broadcast::channel(options.capacity.max(1));
        let (closing, _) = watch::channel(false);
        let fanout = Self {
            sender,
            closing: Arc::new(closing),
        };
        let follower = Follower {
            fanout: fanout.clone(),
            pool,
            at: std::sync::Mutex::new(head),
            batch_size: options.reader.batch_size,
        };
        tracing::info!(position = head.position, "live event fan-out started");
        Ok((fanout, tokio::spawn(follower.run(wakeup, shutdown))))
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

/// What a subscriber of the fan-out receives next.
#[derive(Debug)]
pub enum Received {
    /// The next event.
    Event(Arc<StoredEvent>),
    /// It fell behind and missed this many events: whatever it keeps from events must be
    /// loaded afresh.
    Missed(u64),
}

/// The next thing `events` receives, or `None` once `shutdown` turns true or the fan-out
/// stopped: the one loop of every in-process follower of the fan-out.
pub async fn receive(
    events: &mut broadcast::Receiver<Arc<StoredEvent>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Received> {
    if *shutdown.borrow() {
        return None;
    }
    tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => None,
        received = events.recv() => match received {
            Ok(event) => Some(Received::Event(event)),
            Err(broadcast::error::RecvError::Lagged(missed)) => Some(Received::Missed(missed)),
            Err(broadcast::error::RecvError::Closed) => None,
        },
    }
}

struct Follower {
    fanout: EventFanout,
    pool: Pool,
    /// The last event broadcast; only the follower's one task moves it.
    at: std::sync::Mutex<Checkpoint>,
    batch_size: i64,
}

impl Follower {
    async fn run(self, wakeup: Wakeup, mut shutdown: watch::Receiver<bool>) {
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        let this = &self;
        // A pass never fails: a failed read is logged and tried again at the next wake-up.
        let _ = follow(wakeup, Stop::Anytime, stopped, move || {
            this.broadcast_next()
        })
        .await;
        self.fanout.close();
        tracing::info!("live event fan-out stopped");
    }

    /// Broadcasts the next batch readable after `at`. A failed read is logged and
    /// retried at the next wake-up: `at` only moves past what was sent.
    async fn broadcast_next(&self) -> Result<Pass, StoreError> {
        let events = match self.read().await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "live event fan-out could not read the feed; retrying");
                return Ok(Pass::CaughtUp);
            }
        };
        let read = events.len();
        for event in events {
            *self.at() = event.checkpoint();
            // An error only means nobody is listening right now.
            let _ = self.fanout.sender.send(Arc::new(event));
        }
        Ok(pass_after(read, self.batch_size))
    }

    /// The next batch, with each stream's owner: the live streams show each caller only
    /// what it may see.
    async fn read(&self) -> Result<Vec<StoredEvent>, StoreError> {
        let client = self.pool.get().await?;
        let at = *self.at();
        super::read_after(&client, at, self.batch_size, &super::FeedFilter::default()).await
    }

    fn at(&self) -> std::sync::MutexGuard<'_, Checkpoint> {
        self.at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
