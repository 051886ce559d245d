//! One connection's view of the feed: what the store holds after its cursor, then what
//! the fan-out broadcasts, with no event missed or repeated at the switch.
//!
//! A task per connection does the work and hands events to the connection through a
//! bounded buffer:
//!
//! 1. It subscribes to the broadcast **first**: from then on every event the fan-out
//!    reads is queued for it.
//! 2. It catches up from the store (`read_after` from the cursor's checkpoint, in
//!    batches, at the connection's pace) until a read returns nothing new. Every event
//!    broadcast before step 1 was readable before step 1, so this read covers it.
//! 3. It drains the broadcast, skipping each event whose checkpoint is at or before the
//!    last one it handled: both sources are in feed order, so comparing checkpoints is
//!    exact; what is left is exactly what came after.
//!
//! If the broadcast overflowed while it was catching up (the store was slow, or the
//! connection was), it subscribes again and catches up again from where it is; steps
//! 1–3 hold once more. Once live, the fan-out never waits for the connection: when the
//! buffer stays full for the stall timeout, or the broadcast overflowed after all, the
//! stream ends with [`StreamEnd::Lagged`] and the client resumes from its last id.
//!
//! A stream lasts only as long as the credential that opened it: every event the
//! fan-out broadcasts passes the pump, whatever the stream's filter, so the event that
//! revokes its key or disables its user ends it ([`StreamEnd::Revoked`]), as does its
//! token's expiry.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use berth_infrastructure::feed::fanout::EventFanout;
use berth_infrastructure::feed::{self, Checkpoint, FeedFilter, StoredEvent};
use berth_infrastructure::StoreError;
use deadpool_postgres::Pool;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::error::{SendTimeoutError, TrySendError};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::http::live::LiveStreams;

/// How many times a connection may catch up again because the broadcast overflowed
/// while it was catching up, before it is told it lags.
const MAX_CATCH_UP_ROUNDS: u32 = 4;

/// Whether a caller may see an event (see [`crate::http::live::visibility::visible`]).
pub type Visibility = Arc<dyn Fn(&StoredEvent) -> bool + Send + Sync>;

/// What a connection asks for.
pub struct StreamRequest {
    /// The position the client has seen everything up to (`Last-Event-ID` or `after`).
    pub after_position: i64,
    /// That position's feed checkpoint.
    pub after: Checkpoint,
    /// Only events passing this filter.
    pub filter: FeedFilter,
    /// Only events the caller may see.
    pub visible: Visibility,
    /// The credential the stream was opened with: it ends with it.
    pub credential: StreamCredential,
}

/// Who opened a stream, and with what: the stream ends when the user is disabled or
/// forgotten, the key is revoked, or the token expires.
#[derive(Debug, Clone, Copy)]
pub struct StreamCredential {
    /// The user.
    pub user_id: Uuid,
    /// The API key presented, or the one the token was issued for.
    pub key_id: Uuid,
    /// When the token or console session expires (`None` for a key).
    pub expires_at: Option<DateTime<Utc>>,
    /// The console session it was opened with, if any.
    pub session_id: Option<Uuid>,
}

impl StreamCredential {
    /// Why `event` ends a stream opened with this credential, if it does.
    fn revoked_by(&self, event: &StoredEvent) -> Option<&'static str> {
        if event.aggregate_type != "user" || event.aggregate_id != self.user_id.to_string() {
            return None;
        }
        match event.event_type.as_str() {
            "UserDisabled" | "UserForgotten" => Some("its user was disabled"),
            "ApiKeyRevoked"
                if event.payload_field("key_id").as_deref()
                    == Some(self.key_id.to_string().as_str()) =>
            {
                Some("the API key it was opened with was revoked")
            }
            "ConsoleSessionEnded"
                if self.session_id.is_some_and(|id| {
                    event.payload_field("session_id").as_deref() == Some(id.to_string().as_str())
                }) =>
            {
                Some("its console session was signed out")
            }
            _ => None,
        }
    }
}

/// Why a stream ends, and where its client should resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// The connection fell behind (its buffer filled, or the broadcast overflowed).
    Lagged {
        /// The last event delivered to it (or its starting cursor).
        last_position: i64,
    },
    /// Berth is stopping.
    ShuttingDown {
        /// The last event delivered to it (or its starting cursor).
        last_position: i64,
    },
    /// Reading the store failed while catching up.
    Unavailable {
        /// The last event delivered to it (or its starting cursor).
        last_position: i64,
    },
    /// The credential it was opened with no longer works.
    Revoked {
        /// The last event delivered to it (or its starting cursor).
        last_position: i64,
        /// What happened to the credential.
        reason: &'static str,
    },
}

impl StreamEnd {
    /// The position to resume after.
    pub fn last_position(&self) -> i64 {
        match self {
            Self::Lagged { last_position }
            | Self::ShuttingDown { last_position }
            | Self::Unavailable { last_position }
            | Self::Revoked { last_position, .. } => *last_position,
        }
    }

    /// `lagged`, `shutdown`, `unavailable` or `revoked`: the SSE event name and the
    /// JSON `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Lagged { .. } => "lagged",
            Self::ShuttingDown { .. } => "shutdown",
            Self::Unavailable { .. } => "unavailable",
            Self::Revoked { .. } => "revoked",
        }
    }

    /// A sentence for the client.
    pub fn detail(&self) -> String {
        let last = self.last_position();
        match self {
            Self::Lagged { .. } => format!(
                "this connection fell too far behind the event stream and was closed; \
                 reconnect with Last-Event-ID: {last} (or after={last}) to resume"
            ),
            Self::ShuttingDown { .. } => format!(
                "Berth is shutting down; reconnect with Last-Event-ID: {last} (or after={last}) to resume"
            ),
            Self::Unavailable { .. } => format!(
                "the event store could not be read; reconnect with Last-Event-ID: {last} (or after={last}) to resume"
            ),
            Self::Revoked { reason, .. } => format!(
                "this stream was closed because {reason}; a valid credential may resume it with \
                 Last-Event-ID: {last} (or after={last})"
            ),
        }
    }

    /// The final JSON message: `{"type", "last_event_id", "detail"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": self.kind(),
            "last_event_id": self.last_position(),
            "detail": self.detail(),
        })
    }
}

/// What a live stream delivers, in order.
#[derive(Debug)]
pub enum Delivery {
    /// The next event.
    Event(Arc<StoredEvent>),
    /// The last message: why the stream ends.
    End(StreamEnd),
}

/// One connection's subscription: events in feed order, then possibly a [`StreamEnd`].
pub struct LiveSubscription {
    events: mpsc::Receiver<Arc<StoredEvent>>,
    end: Option<oneshot::Receiver<StreamEnd>>,
}

impl LiveSubscription {
    /// Subscribes to the broadcast, then starts catching up from the store in a task of
    /// its own. Dropping the subscription stops the task.
    pub fn open(streams: &LiveStreams, pool: Pool, request: StreamRequest) -> Self {
        // First of all: from here on, nothing the fan-out reads can pass us by.
        let receiver = streams.fanout.subscribe();
        let (tx, events) = mpsc::channel(streams.options.connection_buffer.max(1));
        let (end_tx, end) = oneshot::channel();
        let pump = Pump {
            fanout: streams.fanout.clone(),
            closing: streams.fanout.closing(),
            receiver,
            pool,
            batch_size: streams.options.catch_up_batch.max(1),
            stall_timeout: streams.options.stall_timeout,
            tx,
            last: request.after,
            last_position: request.after_position,
            filter: request.filter,
            visible: request.visible,
            credential: request.credential,
        };
        tokio::spawn(async move {
            if let Some(end) = pump.run().await {
                tracing::debug!(
                    reason = end.kind(),
                    last_event_id = end.last_position(),
                    "live stream ends"
                );
                let _ = end_tx.send(end);
            }
        });
        Self {
            events,
            end: Some(end),
        }
    }

    /// The next delivery; `None` once the stream is over. Cancel-safe.
    pub async fn next(&mut self) -> Option<Delivery> {
        if let Some(event) = self.events.recv().await {
            return Some(Delivery::Event(event));
        }
        // The task ended and everything it buffered was delivered: now its last word.
        let end = self.end.as_mut()?;
        let outcome = end.await;
        self.end = None;
        outcome.ok().map(Delivery::End)
    }
}

/// The per-connection task.
struct Pump {
    fanout: EventFanout,
    closing: watch::Receiver<bool>,
    receiver: broadcast::Receiver<Arc<StoredEvent>>,
    pool: Pool,
    batch_size: i64,
    stall_timeout: Duration,
    tx: mpsc::Sender<Arc<StoredEvent>>,
    /// Every event at or before this point was delivered or passed over.
    last: Checkpoint,
    /// The last event delivered (or the starting cursor): where the client resumes.
    last_position: i64,
    filter: FeedFilter,
    visible: Visibility,
    credential: StreamCredential,
}

/// How following the broadcast stopped.
enum Stopped {
    /// For good: `None` when the client went away, else what to tell it.
    Ended(Option<StreamEnd>),
    /// The broadcast overflowed before anything was taken from it: catch up again.
    OverflowedWhileCatchingUp,
}

impl Pump {
    /// Runs until the stream ends; `None` when the client went away first.
    async fn run(mut self) -> Option<StreamEnd> {
        let mut rounds = 0;
        loop {
            if let Err(end) = self.catch_up().await {
                return end;
            }
            match self.follow().await {
                Stopped::Ended(end) => return end,
                Stopped::OverflowedWhileCatchingUp if rounds < MAX_CATCH_UP_ROUNDS => {
                    rounds += 1;
                    self.receiver = self.fanout.subscribe();
                }
                Stopped::OverflowedWhileCatchingUp => return Some(self.lagged()),
            }
        }
    }

    fn lagged(&self) -> StreamEnd {
        StreamEnd::Lagged {
            last_position: self.last_position,
        }
    }

    fn shutting_down(&self) -> StreamEnd {
        StreamEnd::ShuttingDown {
            last_position: self.last_position,
        }
    }

    fn revoked(&self, reason: &'static str) -> StreamEnd {
        StreamEnd::Revoked {
            last_position: self.last_position,
            reason,
        }
    }

    /// Delivers what the store holds after `last`, waiting for room in the buffer,
    /// until a read returns nothing new.
    async fn catch_up(&mut self) -> Result<(), Option<StreamEnd>> {
        loop {
            let batch = tokio::select! {
                biased;
                () = closing(&mut self.closing) => return Err(Some(self.shutting_down())),
                () = self.tx.closed() => return Err(None),
                batch = read(&self.pool, self.last, self.batch_size, &self.filter) => batch,
            };
            let batch = batch.map_err(|e| {
                tracing::warn!(error = %e, "a live stream could not catch up from the store");
                Some(StreamEnd::Unavailable {
                    last_position: self.last_position,
                })
            })?;
            if batch.is_empty() {
                return Ok(());
            }
            for event in batch {
                self.last = event.checkpoint();
                if !(self.visible)(&event) {
                    continue;
                }
                let position = event.position;
                tokio::select! {
                    biased;
                    () = closing(&mut self.closing) => return Err(Some(self.shutting_down())),
                    sent = self.tx.send(Arc::new(event)) => {
                        if sent.is_err() {
                            return Err(None);
                        }
                    }
                }
                self.last_position = position;
            }
        }
    }

    /// Passes on what the fan-out broadcasts, never waiting for the connection.
    async fn follow(&mut self) -> Stopped {
        let mut received_any = false;
        let expiry = expiry(self.credential.expires_at);
        tokio::pin!(expiry);
        loop {
            let next = tokio::select! {
                biased;
                () = closing(&mut self.closing) => return Stopped::Ended(Some(self.shutting_down())),
                () = self.tx.closed() => return Stopped::Ended(None),
                () = &mut expiry => return Stopped::Ended(Some(self.revoked("the token it was opened with expired"))),
                next = self.receiver.recv() => next,
            };
            let event = match next {
                Ok(event) => event,
                Err(RecvError::Lagged(_)) if !received_any => {
                    return Stopped::OverflowedWhileCatchingUp;
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(
                        missed,
                        "a live stream's reader fell behind the broadcast; closing it"
                    );
                    return Stopped::Ended(Some(self.lagged()));
                }
                Err(RecvError::Closed) => return Stopped::Ended(Some(self.shutting_down())),
            };
            received_any = true;
            // Before anything else: an event this stream would not show may still be
            // the one that revokes it.
            if let Some(reason) = self.credential.revoked_by(&event) {
                return Stopped::Ended(Some(self.revoked(reason)));
            }
            // Already delivered (or passed over) while catching up.
            if event.checkpoint() <= self.last {
                continue;
            }
            self.last = event.checkpoint();
            if !self.filter.matches(&event) || !(self.visible)(&event) {
                continue;
            }
            let position = event.position;
            let event = match self.tx.try_send(event) {
                Ok(()) => {
                    self.last_position = position;
                    continue;
                }
                Err(TrySendError::Full(event)) => event,
                Err(TrySendError::Closed(_)) => return Stopped::Ended(None),
            };
            // A full buffer may be a burst (events held back behind an open transaction
            // become readable all at once) rather than a stalled client: give the
            // client a moment to make room. Only this connection waits; the broadcast
            // keeps what arrives meanwhile, up to its capacity.
            let sent = tokio::select! {
                biased;
                () = closing(&mut self.closing) => return Stopped::Ended(Some(self.shutting_down())),
                sent = self.tx.send_timeout(event, self.stall_timeout) => sent,
            };
            match sent {
                Ok(()) => self.last_position = position,
                Err(SendTimeoutError::Timeout(_)) => {
                    tracing::info!(
                        last_event_id = self.last_position,
                        "a live stream's client is not keeping up; closing it"
                    );
                    return Stopped::Ended(Some(self.lagged()));
                }
                Err(SendTimeoutError::Closed(_)) => return Stopped::Ended(None),
            }
        }
    }
}

/// Completes when a token expiring at `at` has expired; never for a key.
async fn expiry(at: Option<DateTime<Utc>>) {
    match at {
        Some(at) => {
            let left = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(left).await;
        }
        None => std::future::pending().await,
    }
}

/// Completes once the streams are told to end.
async fn closing(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

async fn read(
    pool: &Pool,
    after: Checkpoint,
    limit: i64,
    filter: &FeedFilter,
) -> Result<Vec<StoredEvent>, StoreError> {
    let client = pool.get().await?;
    feed::read_after(&client, after, limit, filter).await
}
