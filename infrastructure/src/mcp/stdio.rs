//! MCP over a server's standard input and output: one JSON-RPC message per line.
//!
//! Servers may print banners or logs on stdout; lines that are not JSON-RPC are skipped,
//! counted, and — if nothing but such lines ever came — reported as a protocol error
//! rather than as a silent timeout or close, since that is what a person needs to see.

use std::io::ErrorKind;
use std::time::Duration;

use berth_application::runtime::{ProbeError, StdioConnection};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::jsonrpc::{self, Incoming};
use super::MAX_MESSAGE_BYTES;

/// The most lines that are not JSON-RPC tolerated before the server is judged broken.
const MAX_NOISE_LINES: usize = 1000;

/// One probe's conversation over a stdio connection, with what it has seen so far.
pub(super) struct StdioChannel {
    reader: BufReader<Box<dyn AsyncRead + Send + Unpin>>,
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    line: Vec<u8>,
    noise_lines: usize,
    first_noise: Option<String>,
    heard_jsonrpc: bool,
}

enum Line {
    Complete,
    End,
}

impl StdioChannel {
    pub(super) fn new(connection: StdioConnection) -> Self {
        Self {
            reader: BufReader::new(connection.reader),
            writer: connection.writer,
            line: Vec::new(),
            noise_lines: 0,
            first_noise: None,
            heard_jsonrpc: false,
        }
    }

    /// Writes one message as a line.
    pub(super) async fn send(
        &mut self,
        step: &'static str,
        message: &Value,
    ) -> Result<(), ProbeError> {
        let mut bytes = message.to_string().into_bytes();
        bytes.push(b'\n');
        let written = async {
            self.writer.write_all(&bytes).await?;
            self.writer.flush().await
        }
        .await;
        written.map_err(|e| {
            tracing::debug!(error = %e, step, "writing to the server's stdin failed");
            ProbeError::Closed { step }
        })
    }

    /// Sends a request and reads lines until its response, answering the server's own
    /// requests on the way.
    pub(super) async fn request(
        &mut self,
        step: &'static str,
        id: u64,
        message: &Value,
    ) -> Result<Value, ProbeError> {
        self.send(step, message).await?;
        let id = Value::from(id);
        loop {
            match self.read_line(step).await? {
                Line::End => return Err(self.closed(step)),
                Line::Complete => {}
            }
            let text = self.line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match jsonrpc::classify_bytes(text) {
                Incoming::Response {
                    id: answered,
                    outcome,
                } if answered == id => {
                    self.heard_jsonrpc = true;
                    return outcome.map_err(|detail| ProbeError::Protocol { step, detail });
                }
                Incoming::Response { .. } | Incoming::Notification => self.heard_jsonrpc = true,
                Incoming::Request { id, method } => {
                    self.heard_jsonrpc = true;
                    self.send(step, &jsonrpc::reply_to_server(id, &method))
                        .await?;
                }
                Incoming::Noise => {
                    self.noise_lines += 1;
                    if self.first_noise.is_none() {
                        self.first_noise = Some(jsonrpc::excerpt(&String::from_utf8_lossy(text)));
                    }
                    tracing::trace!(step, "skipped a stdout line that is not JSON-RPC");
                    if self.noise_lines > MAX_NOISE_LINES {
                        return Err(ProbeError::Protocol {
                            step,
                            detail: format!(
                                "more than {MAX_NOISE_LINES} lines on stdout that are not JSON-RPC; first: {:?}",
                                self.first_noise.as_deref().unwrap_or_default()
                            ),
                        });
                    }
                }
            }
        }
    }

    /// The error for running out of time in `step`: a timeout, unless the server only
    /// ever wrote things that are not JSON-RPC, which is the more useful diagnosis.
    pub(super) fn timed_out(&self, step: &'static str, timeout: Duration) -> ProbeError {
        match self.only_noise() {
            Some(first) => ProbeError::Protocol {
                step,
                detail: format!(
                    "no JSON-RPC answer within {timeout:?}; the server wrote only other output, starting with {first:?}"
                ),
            },
            None => ProbeError::Timeout { step, timeout },
        }
    }

    fn closed(&self, step: &'static str) -> ProbeError {
        match self.only_noise() {
            Some(first) => ProbeError::Protocol {
                step,
                detail: format!(
                    "the server wrote only output that is not JSON-RPC, starting with {first:?}, then closed stdout"
                ),
            },
            None => ProbeError::Closed { step },
        }
    }

    fn only_noise(&self) -> Option<&str> {
        if self.heard_jsonrpc {
            return None;
        }
        self.first_noise.as_deref()
    }

    /// Reads one line (without its `\n`) into `self.line`, refusing lines longer than
    /// [`MAX_MESSAGE_BYTES`]. A last line without `\n` counts as complete.
    async fn read_line(&mut self, step: &'static str) -> Result<Line, ProbeError> {
        self.line.clear();
        loop {
            let available = match self.reader.fill_buf().await {
                Ok(available) => available,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, step, "reading the server's stdout failed");
                    return Err(ProbeError::Closed { step });
                }
            };
            if available.is_empty() {
                return Ok(if self.line.is_empty() {
                    Line::End
                } else {
                    Line::Complete
                });
            }
            let (taken, complete) = match available.iter().position(|b| *b == b'\n') {
                Some(end) => (end, true),
                None => (available.len(), false),
            };
            if self.line.len() + taken > MAX_MESSAGE_BYTES {
                return Err(ProbeError::Protocol {
                    step,
                    detail: format!(
                        "the server wrote a line longer than {MAX_MESSAGE_BYTES} bytes"
                    ),
                });
            }
            self.line.extend_from_slice(&available[..taken]);
            self.reader
                .consume(if complete { taken + 1 } else { taken });
            if complete {
                return Ok(Line::Complete);
            }
        }
    }
}
