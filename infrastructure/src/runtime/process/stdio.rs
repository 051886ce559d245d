//! A stdio server's pipes, lent to one client at a time.
//!
//! The child's stdout is read all the time: while a client is connected its bytes go to
//! that client, while none is they are dropped (as Docker drops output nobody is
//! attached to), so a detached server never blocks on a full pipe and a new client never
//! receives answers meant for an earlier one. The child's stdin stays open between
//! clients.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use berth_application::runtime::{RuntimeError, StdioConnection};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

/// Bytes buffered between a client and the child in each direction.
const PIPE_BUFFER: usize = 64 * 1024;

/// The stdio of one run of a stdio server; clones share it.
#[derive(Debug, Clone)]
pub struct StdioChannel {
    clients: Arc<Semaphore>,
    stdout: Arc<Mutex<StdoutSlot>>,
    stdin: Arc<Mutex<ChildStdin>>,
}

#[derive(Debug, Default)]
struct StdoutSlot {
    client: Option<DuplexStream>,
    closed: bool,
}

impl StdioChannel {
    /// Takes over the child's pipes and starts reading its stdout.
    pub fn new(stdin: ChildStdin, stdout: ChildStdout) -> Self {
        let slot = Arc::new(Mutex::new(StdoutSlot::default()));
        tokio::spawn(pump_stdout(stdout, Arc::clone(&slot)));
        Self {
            clients: Arc::new(Semaphore::new(1)),
            stdout: slot,
            stdin: Arc::new(Mutex::new(stdin)),
        }
    }

    /// A connection to the child, once the previous client (if any) has dropped both
    /// halves of its own; waits at most `wait` for that.
    pub async fn connect(&self, wait: Duration) -> Result<StdioConnection, RuntimeError> {
        let permit = tokio::time::timeout(wait, Arc::clone(&self.clients).acquire_owned())
            .await
            .map_err(|_| {
                RuntimeError::Failed(format!(
                    "another client is talking to this server over stdio and did not finish within {wait:?}; only one can at a time"
                ))
            })?
            .map_err(|_| RuntimeError::Failed("the server's stdio is closed".into()))?;
        let permit = Arc::new(permit);

        let (client_reader, pump_writer) = tokio::io::duplex(PIPE_BUFFER);
        {
            let mut slot = self.stdout.lock().await;
            if !slot.closed {
                slot.client = Some(pump_writer);
            }
            // When closed, `pump_writer` is dropped here and the client reads EOF at once.
        }

        let (client_writer, pump_reader) = tokio::io::duplex(PIPE_BUFFER);
        tokio::spawn(pump_stdin(pump_reader, Arc::clone(&self.stdin)));

        Ok(StdioConnection {
            reader: Box::new(Held {
                inner: client_reader,
                _permit: Arc::clone(&permit),
            }),
            writer: Box::new(Held {
                inner: client_writer,
                _permit: permit,
            }),
        })
    }
}

async fn pump_stdout(mut stdout: ChildStdout, slot: Arc<Mutex<StdoutSlot>>) {
    let mut buffer = vec![0_u8; 8 * 1024];
    loop {
        let read = match stdout.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let mut slot = slot.lock().await;
        if let Some(client) = slot.client.as_mut() {
            if client.write_all(&buffer[..read]).await.is_err() {
                slot.client = None;
            }
        }
    }
    let mut slot = slot.lock().await;
    slot.closed = true;
    slot.client = None;
}

async fn pump_stdin(mut from_client: DuplexStream, stdin: Arc<Mutex<ChildStdin>>) {
    let mut buffer = vec![0_u8; 8 * 1024];
    loop {
        let read = match from_client.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let mut stdin = stdin.lock().await;
        if stdin.write_all(&buffer[..read]).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
}

/// One half of a client's connection; the client slot frees when both halves are gone.
struct Held<T> {
    inner: T,
    _permit: Arc<OwnedSemaphorePermit>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Held<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Held<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
