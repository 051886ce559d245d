//! A container's logs: stdout and stderr for `http` servers; stderr alone for `stdio`
//! servers, whose stdout is the MCP channel (JSON-RPC traffic, possibly carrying what
//! tools returned), not a log.
//!
//! The engine's `tail` counts entries of both streams, so the last N stderr lines of a
//! stdio server are found by widening the window until it holds N of them.

use berth_application::runtime::RuntimeError;
use berth_domain::catalog::Transport;
use bollard::query_parameters::LogsOptions;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::config::{container_name, transport_label, LABEL_TRANSPORT};
use super::inspect::label;
use super::output::{log_lines, Source};
use super::DockerRuntime;

/// The first window tried is this many times the lines wanted.
const FIRST_WINDOW_FACTOR: usize = 4;
/// Lines read ahead of a slow follower.
const FOLLOW_BUFFER: usize = 256;
/// Above this many entries the whole log is read instead.
const LARGEST_WINDOW: usize = 1 << 20;

/// How far back to read, in the engine's terms.
enum Window {
    Last(usize),
    All,
}

impl Window {
    fn tail(&self) -> String {
        match self {
            Self::Last(entries) => entries.to_string(),
            Self::All => "all".to_owned(),
        }
    }
}

impl DockerRuntime {
    /// The last `tail` log lines.
    pub(super) async fn backlog(
        &self,
        server_id: Uuid,
        tail: usize,
    ) -> Result<Vec<String>, RuntimeError> {
        if tail == 0 {
            return Ok(Vec::new());
        }
        let mut lines = if self.is_stdio(server_id).await? {
            self.stderr_window(server_id, tail).await?.1
        } else {
            self.read(server_id, true, Window::Last(tail), false)
                .map_ok(|(_, line)| line)
                .try_collect()
                .await?
        };
        lines.drain(..lines.len().saturating_sub(tail));
        Ok(lines)
    }

    /// The last `tail` log lines, then every new one until the container stops.
    ///
    /// The request is sent at once rather than when the stream is first polled; the
    /// engine still registers the follower a moment later, so with `tail == 0` a line
    /// written in that moment can be missed.
    pub(super) async fn follow(
        &self,
        server_id: Uuid,
        tail: usize,
    ) -> Result<BoxStream<'static, Result<String, RuntimeError>>, RuntimeError> {
        let lines = if self.is_stdio(server_id).await? {
            let (window, skip) = if tail == 0 {
                (Window::Last(0), 0)
            } else {
                let (window, lines) = self.stderr_window(server_id, tail).await?;
                (window, lines.len().saturating_sub(tail))
            };
            // Lines written between the probe and now shift the window forward, so the
            // backlog may come out a little short; the live part misses nothing.
            self.read(server_id, false, window, true).skip(skip).boxed()
        } else {
            self.read(server_id, true, Window::Last(tail), true)
        };
        Ok(eager(lines.map_ok(|(_, line)| line).boxed()))
    }

    async fn is_stdio(&self, server_id: Uuid) -> Result<bool, RuntimeError> {
        let found = self
            .inspect_container(server_id)
            .await?
            .ok_or(RuntimeError::NotFound)?;
        Ok(label(&found, LABEL_TRANSPORT) == Some(transport_label(Transport::Stdio)))
    }

    /// The smallest window of entries holding `want` stderr lines (or the whole log),
    /// with the stderr lines in it.
    async fn stderr_window(
        &self,
        server_id: Uuid,
        want: usize,
    ) -> Result<(Window, Vec<String>), RuntimeError> {
        let mut entries = want.saturating_mul(FIRST_WINDOW_FACTOR);
        loop {
            let window = if entries > LARGEST_WINDOW {
                Window::All
            } else {
                Window::Last(entries)
            };
            let lines: Vec<(Source, String)> = self
                .read(server_id, true, window, false)
                .try_collect()
                .await?;
            let reached_start = lines.len() < entries;
            let stderr: Vec<String> = lines
                .into_iter()
                .filter(|(source, _)| *source == Source::Stderr)
                .map(|(_, line)| line)
                .collect();
            if stderr.len() >= want || reached_start || entries > LARGEST_WINDOW {
                let window = if reached_start || entries > LARGEST_WINDOW {
                    Window::All
                } else {
                    Window::Last(entries)
                };
                return Ok((window, stderr));
            }
            entries = entries.saturating_mul(FIRST_WINDOW_FACTOR);
        }
    }

    fn read(
        &self,
        server_id: Uuid,
        stdout: bool,
        window: Window,
        follow: bool,
    ) -> BoxStream<'static, Result<(Source, String), RuntimeError>> {
        let options = LogsOptions {
            follow,
            stdout,
            stderr: true,
            tail: window.tail(),
            ..Default::default()
        };
        // `inspect_container` above negotiated the API version already.
        log_lines(self.docker.logs(&container_name(server_id), Some(options))).boxed()
    }
}

/// Drives `lines` from a task of its own until it ends or the returned stream is
/// dropped, so the engine is asked now, not at the consumer's first poll.
fn eager(
    mut lines: BoxStream<'static, Result<String, RuntimeError>>,
) -> BoxStream<'static, Result<String, RuntimeError>> {
    let (sender, receiver) = mpsc::channel(FOLLOW_BUFFER);
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                () = sender.closed() => return,
                line = lines.next() => line,
            };
            let Some(line) = line else { return };
            if sender.send(line).await.is_err() {
                return;
            }
        }
    });
    stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|line| (line, receiver))
    })
    .boxed()
}
