//! Tells listeners (`LISTEN berth_events`) that events were appended, once the
//! appending transaction has committed.
//!
//! A NOTIFY inside the appending transaction makes its commit take PostgreSQL's single
//! notification lock and hold it while the commit record is flushed, so concurrent
//! appends could no longer share a WAL flush: 16 writers of single-row INSERTs fell from
//! about 9,000 to about 1,000 commits/s on the same server when their table had such a
//! trigger. An announcement is sent instead from a transaction of its own that writes
//! nothing, and announcements are coalesced: while one is waiting or in flight, any
//! number of appends add at most one more.
//!
//! Announcements only shorten waits. A lost one (the process exits first, the database
//! is briefly unreachable) costs a listener at most its poll interval, never an event.

use std::sync::{Arc, OnceLock};

use deadpool_postgres::Pool;
use tokio::sync::mpsc;

use crate::feed::wake::CHANNEL;

/// A notifying transaction is given a transaction id, so its commit would wait for a WAL
/// flush like any write; it protects nothing a crash could lose, so it commits without
/// waiting (`synchronous_commit` off for this transaction only).
const SEND: &str = "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')";

/// Announces appends through connections of a pool. Cheap to clone (shared).
#[derive(Clone)]
pub struct Announcer {
    pool: Pool,
    wanted: Arc<OnceLock<mpsc::Sender<()>>>,
}

impl Announcer {
    /// An announcer using connections of `pool`; its sending task starts with the first
    /// announcement and ends when the last clone is dropped.
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            wanted: Arc::new(OnceLock::new()),
        }
    }

    /// Asks for one announcement; returns at once.
    pub fn announce(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let sender = self.wanted.get_or_init(|| {
            // Capacity 1: a full channel means an announcement is already due, which
            // will cover this append too.
            let (sender, receiver) = mpsc::channel(1);
            runtime.spawn(send_announcements(self.pool.clone(), receiver));
            sender
        });
        let _ = sender.try_send(());
    }
}

async fn send_announcements(pool: Pool, mut wanted: mpsc::Receiver<()>) {
    while wanted.recv().await.is_some() {
        let sent = async {
            let client = pool.get().await.map_err(|e| e.to_string())?;
            let statement = client
                .prepare_cached(SEND)
                .await
                .map_err(|e| e.to_string())?;
            client
                .execute(&statement, &[&CHANNEL])
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "could not announce appended events; listeners will poll");
        }
    }
}
