//! What a registered API's server did (one line per call, never an argument or a
//! credential), kept in memory: the last lines for `logs`, and new ones as they come for
//! `logs?follow=true`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use berth_application::runtime::RuntimeError;
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::sync::broadcast;

/// Lines kept per server.
const KEPT: usize = 1000;

/// One server's lines.
#[derive(Clone)]
pub struct ApiLog {
    inner: Arc<Inner>,
}

struct Inner {
    lines: Mutex<VecDeque<String>>,
    new: broadcast::Sender<String>,
}

impl Default for ApiLog {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                lines: Mutex::new(VecDeque::new()),
                new: broadcast::channel(256).0,
            }),
        }
    }
}

impl ApiLog {
    /// Adds a line.
    pub fn write(&self, line: String) {
        let mut lines = self.inner.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == KEPT {
            lines.pop_front();
        }
        lines.push_back(line.clone());
        // Nobody following is fine.
        let _ = self.inner.new.send(line);
    }

    /// The last `count` lines, oldest first.
    pub fn tail(&self, count: usize) -> Vec<String> {
        let lines = self.inner.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines
            .iter()
            .skip(lines.len().saturating_sub(count))
            .cloned()
            .collect()
    }

    /// The last `tail` lines, then each new one.
    pub fn follow(&self, tail: usize) -> BoxStream<'static, Result<String, RuntimeError>> {
        // Subscribed before the tail is read: a line written between is seen twice
        // rather than not at all.
        let receiver = self.inner.new.subscribe();
        let past = stream::iter(self.tail(tail).into_iter().map(Ok));
        let future = stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(line) => return Some((Ok(line), receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        past.chain(future).boxed()
    }
}
