//! Turning the engine's multiplexed output frames into log lines and stdio bytes.

use std::collections::VecDeque;
use std::io;

use berth_application::runtime::RuntimeError;
use bollard::container::LogOutput;
use futures_util::stream::{self, Stream, StreamExt};
use tokio::io::AsyncRead;
use tokio_util::io::StreamReader;

use super::engine_error;
use crate::runtime::LineSplitter;

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

struct Lines<S> {
    frames: S,
    stdout: LineSplitter,
    stderr: LineSplitter,
    ready: VecDeque<(Source, String)>,
    ended: bool,
}

/// The lines in a stream of log frames, each stream (stdout, stderr) cut separately so
/// a line split over two frames is not interleaved with the other stream.
pub fn log_lines<S>(frames: S) -> impl Stream<Item = Result<(Source, String), RuntimeError>> + Send
where
    S: Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send + Unpin,
{
    let state = Lines {
        frames,
        stdout: LineSplitter::default(),
        stderr: LineSplitter::default(),
        ready: VecDeque::new(),
        ended: false,
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(line) = state.ready.pop_front() {
                return Some((Ok(line), state));
            }
            if state.ended {
                return None;
            }
            match state.frames.next().await {
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                    let lines = state.stdout.push(&message);
                    state
                        .ready
                        .extend(lines.into_iter().map(|line| (Source::Stdout, line)));
                }
                Some(Ok(LogOutput::StdErr { message })) => {
                    let lines = state.stderr.push(&message);
                    state
                        .ready
                        .extend(lines.into_iter().map(|line| (Source::Stderr, line)));
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(error)) => {
                    state.ended = true;
                    return Some((
                        Err(engine_error("reading the container's logs", error)),
                        state,
                    ));
                }
                None => {
                    state.ended = true;
                    let stdout = state.stdout.finish().map(|line| (Source::Stdout, line));
                    let stderr = state.stderr.finish().map(|line| (Source::Stderr, line));
                    state.ready.extend(stdout.into_iter().chain(stderr));
                }
            }
        }
    })
}

/// A reader of the standard output carried by an attach stream; stderr frames are
/// dropped so they cannot corrupt the JSON-RPC channel.
pub fn stdout_reader<S>(frames: S) -> impl AsyncRead + Send + Unpin
where
    S: Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send + Unpin,
{
    let bytes = frames.filter_map(|frame| {
        std::future::ready(match frame {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => Some(Ok(message)),
            Ok(LogOutput::StdErr { .. } | LogOutput::StdIn { .. }) => None,
            Err(error) => Some(Err(io::Error::other(error))),
        })
    });
    StreamReader::new(bytes)
}
