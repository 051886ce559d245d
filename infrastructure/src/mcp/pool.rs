//! The sessions of every running server, one each, opened on demand and closed when the
//! process manager stops or replaces the server's container or process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use berth_application::runtime::{
    ContainerRuntime, McpEndpoint, McpSessions, Placement, ProbeError, ProbeReport,
};
use berth_domain::catalog::Transport;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::upstream::{HttpClients, Upstream};

/// How long to wait between attempts to reach an `http` server that does not listen yet.
const HTTP_RETRY: Duration = Duration::from_millis(200);

/// Every upstream session, by server.
pub struct McpSessionPool {
    runtime: Arc<dyn ContainerRuntime>,
    /// Which node holds each server's session.
    placement: Arc<dyn Placement>,
    /// The clients of servers reached over HTTP.
    http: HttpClients,
    slots: Mutex<HashMap<Uuid, Arc<Slot>>>,
}

/// One server's session, or the right to open it.
#[derive(Default)]
struct Slot {
    current: tokio::sync::Mutex<Option<Arc<Upstream>>>,
    /// Cancelled when the session is closed for good (the server stops or is replaced),
    /// so that one still being opened is given up rather than kept.
    ended: CancellationToken,
}

impl Slot {
    /// Ends the session for good, and any being opened.
    async fn end(&self) {
        self.ended.cancel();
        if let Some(upstream) = self.current.lock().await.take() {
            upstream.close();
        }
    }
}

impl McpSessionPool {
    /// A pool reaching servers through `runtime` (those another node runs through that
    /// node, as `placement` says), those over HTTP with `http`.
    pub fn new(
        runtime: Arc<dyn ContainerRuntime>,
        placement: Arc<dyn Placement>,
        http: HttpClients,
    ) -> Arc<Self> {
        Arc::new(Self {
            runtime,
            placement,
            http,
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// The server's open session, opened (within `timeout`) when it has none or its last
    /// one closed. Requests opening the same server's session wait for one another.
    pub async fn session(
        &self,
        server_id: Uuid,
        transport: Transport,
        timeout: Duration,
    ) -> Result<Arc<Upstream>, ProbeError> {
        let slot = self.slot(server_id);
        let deadline = Instant::now() + timeout;
        // Waiting for another request's open counts against this one's time too: a
        // server that hangs in `initialize` holds up its own callers, each for its time.
        let mut current = tokio::time::timeout_at(deadline, slot.current.lock())
            .await
            .map_err(|_| ProbeError::Timeout {
                step: "initialize",
                timeout,
            })?;
        if let Some(upstream) = current.as_ref().filter(|u| !u.is_closed()) {
            return Ok(Arc::clone(upstream));
        }
        *current = None;
        let left = deadline.saturating_duration_since(Instant::now());
        let opened = tokio::select! {
            opened = self.open(server_id, transport, left) => opened?,
            () = slot.ended.cancelled() => {
                return Err(ProbeError::Closed { step: "initialize" });
            }
        };
        let upstream = Arc::new(opened);
        *current = Some(Arc::clone(&upstream));
        Ok(upstream)
    }

    fn slot(&self, server_id: Uuid) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(slots.entry(server_id).or_default())
    }

    async fn open(
        &self,
        server_id: Uuid,
        transport: Transport,
        timeout: Duration,
    ) -> Result<Upstream, ProbeError> {
        let deadline = Instant::now() + timeout;
        // An HTTP server may take a moment to listen: connection failures are retried
        // until the deadline; a stdio server gets one attempt with the whole timeout.
        loop {
            let endpoint = match self.placement.reach(server_id, transport).await? {
                None => self.runtime.connect(server_id, transport).await?,
                Some(node) => McpEndpoint::Node(node),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match Upstream::open(endpoint, left, &self.http).await {
                Err(ProbeError::Closed { .. }) | Err(ProbeError::Runtime(_))
                    if transport == Transport::Http && Instant::now() + HTTP_RETRY < deadline =>
                {
                    tokio::time::sleep(HTTP_RETRY).await;
                }
                other => return other,
            }
        }
    }
}

impl McpSessionPool {
    /// Ends every session: which node holds each server's session has changed (this
    /// node became, or stopped being, the active worker), so none may be used again.
    pub async fn close_all(&self) {
        let slots: Vec<Arc<Slot>> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, slot)| slot)
            .collect();
        for slot in slots {
            slot.end().await;
        }
    }
}

#[async_trait]
impl McpSessions for McpSessionPool {
    async fn probe(
        &self,
        server_id: Uuid,
        transport: Transport,
        timeout: Duration,
    ) -> Result<ProbeReport, ProbeError> {
        let started = Instant::now();
        let upstream = self.session(server_id, transport, timeout).await?;
        let left = timeout.saturating_sub(started.elapsed());
        let mut report = upstream.report(left).await?;
        report.latency = started.elapsed();
        Ok(report)
    }

    async fn close(&self, server_id: Uuid) {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&server_id);
        if let Some(slot) = slot {
            slot.end().await;
        }
    }
}
