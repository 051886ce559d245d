//! Live event streams: `GET /api/v1/events/stream` (SSE) and `GET /api/v1/events/ws`
//! (WebSocket) share one per-connection [`LiveSubscription`] fed by the process's single
//! [`EventFanout`]; they differ only in how they frame what it delivers.

use std::time::Duration;

use berth_infrastructure::feed::fanout::{EventFanout, FanoutOptions};

pub mod memory;
pub mod subscription;
pub mod visibility;

pub use subscription::{Delivery, LiveSubscription, StreamCredential, StreamEnd, StreamRequest};

/// How live streams behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveOptions {
    /// How often an idle SSE stream gets a `: keep-alive` comment and a WebSocket a ping.
    pub heartbeat: Duration,
    /// Events one connection may have waiting to be written.
    pub connection_buffer: usize,
    /// How long a connection's buffer may stay full before the connection is cut off
    /// as lagging (a burst of events gets this long to drain).
    pub stall_timeout: Duration,
    /// How the process's single follower of the feed runs (its broadcast capacity bounds
    /// how far a connection's reader may fall behind).
    pub fanout: FanoutOptions,
    /// Events read from the store per query while a connection catches up.
    pub catch_up_batch: i64,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(15),
            connection_buffer: 1024,
            stall_timeout: Duration::from_secs(5),
            fanout: FanoutOptions::default(),
            catch_up_batch: 500,
        }
    }
}

/// What every live stream handler needs: the fan-out and the options.
#[derive(Debug, Clone)]
pub struct LiveStreams {
    /// The process's single follower of the feed.
    pub fanout: EventFanout,
    /// How streams behave.
    pub options: LiveOptions,
}
