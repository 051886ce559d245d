//! MCP over streamable HTTP: each message is POSTed to the endpoint; a request's answer
//! comes back as a JSON body or as an event stream carrying it. The session id the
//! server hands out with `initialize` goes back on every later message, and the session
//! is ended with `DELETE` afterwards.

use std::time::Duration;

use berth_application::runtime::{ProbeError, RuntimeError};
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Response, Url};
use serde_json::Value;
use tokio::time::Instant;

use super::jsonrpc::{self, Incoming};
use super::{INITIALIZE, MAX_MESSAGE_BYTES};

const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const ACCEPTED: &str = "application/json, text/event-stream";
/// The longest wait for the server to forget the session, after the probe itself.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// One probe's HTTP exchange: the endpoint, and the session and version it agreed.
pub(super) struct HttpChannel {
    client: reqwest::Client,
    url: Url,
    session: Option<HeaderValue>,
    protocol_version: Option<HeaderValue>,
}

impl HttpChannel {
    pub(super) fn new(url: &str) -> Result<Self, ProbeError> {
        let url = Url::parse(url).map_err(|e| ProbeError::Protocol {
            step: INITIALIZE,
            detail: format!("`{}` is not a URL: {e}", jsonrpc::excerpt(url)),
        })?;
        if url.scheme() != "http" {
            return Err(ProbeError::Protocol {
                step: INITIALIZE,
                detail: format!("`{url}` is not an http:// URL; the probe speaks plain HTTP to servers Berth runs"),
            });
        }
        // Servers Berth runs sit on this host or its container network: a proxy from
        // the environment would only get in the way.
        let client = reqwest::Client::builder().no_proxy().build().map_err(|e| {
            ProbeError::Runtime(RuntimeError::Failed(format!(
                "cannot make an HTTP client: {e}"
            )))
        })?;
        Ok(Self {
            client,
            url,
            session: None,
            protocol_version: None,
        })
    }

    pub(super) fn agree(&mut self, version: &str) {
        self.protocol_version = HeaderValue::from_str(version).ok();
    }

    /// POSTs a request and finds its response in the body or event stream.
    pub(super) async fn request(
        &mut self,
        step: &'static str,
        id: u64,
        message: &Value,
    ) -> Result<Value, ProbeError> {
        let response = self.post(step, message).await?;
        let id = Value::from(id);
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if is_stream {
            return answer_from_stream(step, &id, response).await;
        }
        let body = read_body(step, response, MAX_MESSAGE_BYTES).await?;
        if body.trim_ascii().is_empty() {
            return Err(protocol(
                step,
                "the server answered the request with an empty body",
            ));
        }
        let message: Value = serde_json::from_slice(&body).map_err(|e| {
            protocol(
                step,
                format!(
                    "the answer is not JSON ({e}): {:?}",
                    jsonrpc::excerpt(&String::from_utf8_lossy(&body))
                ),
            )
        })?;
        let messages = match message {
            Value::Array(batch) => batch,
            single => vec![single],
        };
        for message in &messages {
            if let Some(outcome) = outcome_for(step, &id, message) {
                return outcome;
            }
        }
        Err(protocol(
            step,
            format!(
                "the body holds no JSON-RPC response to this request: {:?}",
                jsonrpc::excerpt(&String::from_utf8_lossy(&body))
            ),
        ))
    }

    /// POSTs a notification; any 2xx will do (202 is usual).
    pub(super) async fn notify(
        &mut self,
        step: &'static str,
        message: &Value,
    ) -> Result<(), ProbeError> {
        self.post(step, message).await.map(drop)
    }

    /// Asks the server to end the session, waiting at most until `deadline` and at most
    /// [`CLOSE_WAIT`]. Failures do not matter: the probe is over.
    pub(super) async fn close(self, deadline: Instant) {
        let Some(session) = self.session else {
            return;
        };
        let until = deadline.min(Instant::now() + CLOSE_WAIT);
        let ended = tokio::time::timeout_at(
            until,
            self.client
                .delete(self.url)
                .header(SESSION_ID, session)
                .send(),
        )
        .await;
        match ended {
            Ok(Ok(response)) => {
                tracing::trace!(status = %response.status(), "ended the MCP session")
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "could not end the MCP session"),
            Err(_) => tracing::debug!("ending the MCP session took too long"),
        }
    }

    async fn post(&mut self, step: &'static str, message: &Value) -> Result<Response, ProbeError> {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(ACCEPT, ACCEPTED)
            .json(message);
        if let Some(session) = &self.session {
            request = request.header(SESSION_ID, session.clone());
        }
        if let Some(version) = &self.protocol_version {
            request = request.header(PROTOCOL_VERSION, version.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(step, &e))?;
        if let Some(session) = response.headers().get(SESSION_ID) {
            self.session = Some(session.clone());
        }
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // Only the start of an error page is worth showing.
        let body = read_body(step, response, 4096).await.unwrap_or_default();
        let body = jsonrpc::excerpt(&String::from_utf8_lossy(&body));
        Err(protocol(
            step,
            if body.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {body}")
            },
        ))
    }
}

/// `Some` when `message` is the response to `id`.
fn outcome_for(
    step: &'static str,
    id: &Value,
    message: &Value,
) -> Option<Result<Value, ProbeError>> {
    match jsonrpc::classify(message) {
        Incoming::Response {
            id: answered,
            outcome,
        } if &answered == id => Some(outcome.map_err(|detail| protocol(step, detail))),
        _ => None,
    }
}

/// Reads an event stream until the response to `id` arrives. Other events (progress,
/// logs, requests from the server) are skipped: the probe offers no capabilities.
async fn answer_from_stream(
    step: &'static str,
    id: &Value,
    mut response: Response,
) -> Result<Value, ProbeError> {
    let mut events = EventStream::default();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| transport_error(step, &e))?;
        let Some(chunk) = chunk else {
            return Err(protocol(
                step,
                "the event stream ended without a response to the request",
            ));
        };
        for data in events
            .feed(&chunk)
            .map_err(|detail| protocol(step, detail))?
        {
            if let Ok(message) = serde_json::from_str::<Value>(&data) {
                if let Some(outcome) = outcome_for(step, id, &message) {
                    return outcome;
                }
            }
        }
    }
}

/// Reads a whole body, refusing more than `limit` bytes.
async fn read_body(
    step: &'static str,
    mut response: Response,
    limit: usize,
) -> Result<Vec<u8>, ProbeError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(step, &e))?
    {
        if body.len() + chunk.len() > limit {
            return Err(protocol(
                step,
                format!("the answer is larger than {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn transport_error(step: &'static str, error: &reqwest::Error) -> ProbeError {
    if error.is_builder() {
        return protocol(step, format!("cannot send to this URL: {error}"));
    }
    // Refused, reset or cut short: either way the server is not (or no longer) there.
    tracing::debug!(error = %error, source = ?std::error::Error::source(error), step, "HTTP exchange failed");
    ProbeError::Closed { step }
}

fn protocol(step: &'static str, detail: impl Into<String>) -> ProbeError {
    ProbeError::Protocol {
        step,
        detail: detail.into(),
    }
}

/// An incremental `text/event-stream` parser yielding each event's `data`.
#[derive(Debug, Default)]
struct EventStream {
    pending: Vec<u8>,
    data: String,
}

impl EventStream {
    /// Feeds bytes; returns the data of the events they complete.
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(std::mem::take(&mut self.data));
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            if field == "data" {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value.strip_prefix(' ').unwrap_or(value));
            }
        }
        if self.pending.len() + self.data.len() > MAX_MESSAGE_BYTES {
            return Err(format!("an event larger than {MAX_MESSAGE_BYTES} bytes"));
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_across_chunks_and_lines() {
        let mut stream = EventStream::default();
        assert!(stream
            .feed(b": comment\nevent: message\ndata: {\"a\"")
            .unwrap()
            .is_empty());
        assert_eq!(
            stream.feed(b":1}\r\n\r\ndata:x\ndata: y\n\n").unwrap(),
            vec![r#"{"a":1}"#, "x\ny"]
        );
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut stream = EventStream::default();
        let big = vec![b'x'; MAX_MESSAGE_BYTES + 1];
        assert!(stream.feed(&big).is_err());
    }
}
