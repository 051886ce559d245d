//! Shared by the live stream tests: a plain SSE client (its own decoder, so the wire
//! format is checked independently of Berth's), a WebSocket client, a steady command
//! workload, and the event log read in full through `GET /api/v1/events`.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::api_support::{server_body, TestApp};

/// Where a Berth listens and the token it accepts; cheap to clone into tasks.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `http://ADDR`.
    pub base: String,
    /// The bearer token sent.
    pub token: String,
}

impl Endpoint {
    /// The endpoint of `app` with its admin token.
    pub fn of(app: &TestApp) -> Self {
        Self {
            base: app.url(""),
            token: app.token().to_string(),
        }
    }

    /// `ADDR` without the scheme.
    pub fn host(&self) -> &str {
        self.base.trim_start_matches("http://")
    }
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseMessage {
    /// `id:`.
    pub id: Option<String>,
    /// `event:` (absent for events of the log).
    pub event: Option<String>,
    /// `data:` lines joined.
    pub data: String,
}

/// What a stream yields.
#[derive(Debug, Clone)]
pub enum Received {
    /// An event of the log (its JSON).
    Event(Value),
    /// A final message (`lagged`, `shutdown`, `unavailable`).
    End(SseMessage),
    /// The server ended the response.
    Closed,
}

/// A client of `GET /api/v1/events/stream`.
pub struct SseClient {
    response: reqwest::Response,
    pending: Vec<u8>,
    current: SseMessage,
    has_data: bool,
    messages: VecDeque<SseMessage>,
    /// `: …` comment lines seen (heartbeats).
    pub comments: usize,
}

/// An HTTP client for long-lived streams: no overall timeout.
pub fn stream_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("building the HTTP client")
}

impl SseClient {
    /// Connects with `query` (`aggregate_type=server&…`, may be empty) and, when given,
    /// `Last-Event-ID`; asserts a `200 text/event-stream` answer.
    pub async fn open(
        client: &reqwest::Client,
        endpoint: &Endpoint,
        query: &str,
        last_event_id: Option<i64>,
    ) -> Self {
        let mut request = client
            .get(format!("{}/api/v1/events/stream?{query}", endpoint.base))
            .bearer_auth(&endpoint.token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("opening the SSE stream");
        assert_eq!(response.status(), 200, "SSE stream refused");
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        Self {
            response,
            pending: Vec::new(),
            current: SseMessage::default(),
            has_data: false,
            messages: VecDeque::new(),
            comments: 0,
        }
    }

    /// The next message; `None` when the response ended. Panics after `within`.
    pub async fn message(&mut self, within: Duration) -> Option<SseMessage> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(message) = self.messages.pop_front() {
                return Some(message);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no SSE message within {within:?}"));
            match chunk {
                Ok(Some(bytes)) => self.decode(&bytes),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next event within `within`, if one comes; heartbeats are counted, not returned.
    pub async fn poll(&mut self, within: Duration) -> Option<Received> {
        tokio::time::timeout(within, self.next(within * 2))
            .await
            .ok()
    }

    /// The next event, final message or end of the response.
    pub async fn next(&mut self, within: Duration) -> Received {
        match self.message(within).await {
            None => Received::Closed,
            Some(message) if message.event.is_none() => {
                let event: Value = serde_json::from_str(&message.data)
                    .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {}", message.data));
                let id = message.id.as_deref().and_then(|i| i.parse::<i64>().ok());
                assert_eq!(id, event["position"].as_i64(), "`id:` is the position");
                Received::Event(event)
            }
            Some(message) => Received::End(message),
        }
    }

    fn decode(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8(raw[..end].to_vec()).expect("SSE is UTF-8");
            if line.is_empty() {
                if self.has_data {
                    self.messages.push_back(std::mem::take(&mut self.current));
                }
                self.current = SseMessage::default();
                self.has_data = false;
            } else if line.starts_with(':') {
                self.comments += 1;
            } else {
                let (field, value) = line.split_once(": ").unwrap_or((&line, ""));
                match field {
                    "id" => self.current.id = Some(value.to_string()),
                    "event" => self.current.event = Some(value.to_string()),
                    "data" => {
                        assert!(!self.has_data, "one data line per message: {line}");
                        self.current.data = value.to_string();
                        self.has_data = true;
                    }
                    other => panic!("unexpected SSE field {other}: {line}"),
                }
            }
        }
    }
}

/// A client of `GET /api/v1/events/ws`. A task reads the socket all the time (so pings
/// are answered, as any WebSocket client does) and queues the text messages.
pub struct WsClient {
    messages: mpsc::UnboundedReceiver<Value>,
    pings: Arc<AtomicUsize>,
    close: Option<oneshot::Sender<()>>,
    reader: tokio::task::JoinHandle<()>,
}

impl WsClient {
    /// Connects with `query`; the token goes in the `Authorization` header.
    pub async fn open(endpoint: &Endpoint, query: &str) -> Self {
        let request = ws_request(endpoint, query, Some(&endpoint.token));
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("opening the WebSocket: {e}"));
        assert_eq!(response.status(), 101);
        let (tx, messages) = mpsc::unbounded_channel();
        let (close, close_rx) = oneshot::channel();
        let pings = Arc::new(AtomicUsize::new(0));
        let reader = tokio::spawn(read_socket(socket, tx, pings.clone(), close_rx));
        Self {
            messages,
            pings,
            close: Some(close),
            reader,
        }
    }

    /// The next text message as JSON; `None` once closed. Panics after `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        tokio::time::timeout(within, self.messages.recv())
            .await
            .unwrap_or_else(|_| panic!("no WebSocket message within {within:?}"))
    }

    /// Pings received so far (heartbeats).
    pub fn pings(&self) -> usize {
        self.pings.load(Ordering::SeqCst)
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        if let Some(close) = self.close.take() {
            let _ = close.send(());
        }
        let _ = (&mut self.reader).await;
    }
}

async fn read_socket(
    mut socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    messages: mpsc::UnboundedSender<Value>,
    pings: Arc<AtomicUsize>,
    mut close: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            message = socket.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let value = serde_json::from_str(text.as_str()).expect("JSON message");
                    if messages.send(value).is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Ping(_))) => {
                    pings.fetch_add(1, Ordering::SeqCst);
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = &mut close => {
                let _ = socket.close(None).await;
                return;
            }
        }
    }
}

/// A WebSocket handshake request for `GET /api/v1/events/ws?query`.
pub fn ws_request(
    endpoint: &Endpoint,
    query: &str,
    token: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = format!("ws://{}/api/v1/events/ws?{query}", endpoint.host())
        .into_client_request()
        .expect("a WebSocket request");
    if let Some(token) = token {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("a header value"),
        );
    }
    request
}

/// Every event `GET /api/v1/events?query` lists, paged to the end, once every event
/// stored so far can be read: the feed holds events back while an older transaction is
/// open anywhere in the cluster (another test's included), so a list taken at once could
/// stop short of what was just written.
pub async fn all_events(app: &TestApp, query: &str) -> Vec<Value> {
    app.feed_settled().await;
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = app
            .get(&format!("/api/v1/events?after={after}&limit=1000&{query}"))
            .await;
        page.expect(200);
        let page = page.json();
        let batch = page["events"].as_array().cloned().unwrap_or_default();
        if batch.is_empty() {
            return events;
        }
        after = page["next"].as_i64().expect("next");
        events.extend(batch);
    }
}

/// The `event_id`s of `events`, in order.
pub fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id").to_string())
        .collect()
}

/// Commands through the API, one at a time: create a server, disable it, enable it, …
pub struct Workload {
    catalog_id: String,
    servers: Vec<String>,
    step: usize,
}

impl Workload {
    /// Registers the catalog entry the servers are made of.
    pub async fn new(app: &TestApp) -> Self {
        let name = format!("live-{}", &crate::api_support::uuid()[..8]);
        let entry = app.register_fixture(&name).await;
        entry.expect(201);
        Self {
            catalog_id: entry.id(),
            servers: Vec::new(),
            step: 0,
        }
    }

    /// Sends the next command; returns the position it answered with and its round trip.
    pub async fn step(&mut self, app: &TestApp) -> (i64, Duration) {
        let step = self.step;
        self.step += 1;
        let started = Instant::now();
        let answer = match step % 3 {
            0 => {
                let body = server_body(&self.catalog_id, &format!("live-{step}"), "s3cr3t");
                let answer = app.post("/api/v1/servers", &body).await;
                answer.expect(201);
                self.servers.push(answer.id());
                answer
            }
            n => {
                let id = self.servers.last().expect("a server was created");
                let action = if n == 1 { "disable" } else { "enable" };
                let answer = app.command(&format!("/api/v1/servers/{id}/{action}")).await;
                answer.expect(202);
                answer
            }
        };
        (answer.position(), started.elapsed())
    }

    /// The servers created so far.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }
}

/// A small deterministic generator; the seed is printed so a run can be repeated.
pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock, or from `LIVE_SEED` when set.
    pub fn seeded() -> Self {
        let seed = std::env::var("LIVE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        println!("LIVE_SEED={seed}");
        Self(seed | 1)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// The `q`-quantile of `values` (sorted in place).
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    if values.is_empty() {
        return f64::NAN;
    }
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    values[index.min(values.len() - 1)]
}
