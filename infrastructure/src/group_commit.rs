//! Group commit: the appends of commands running at the same time go into PostgreSQL as
//! one statement, so they share one transaction, one commit and one WAL flush.
//!
//! Appends queue up while the writers are busy; a free writer takes everything queued
//! (up to [`MAX_EVENTS`]) and inserts it with one `INSERT … SELECT FROM UNNEST` in a
//! transaction of its own ([`crate::append`]): all of it is committed, or none. A lone
//! append goes alone, so a quiet system pays nothing for this.
//!
//! Each command still stands on its own. When the shared statement fails with an error
//! PostgreSQL reports (one command lost an optimistic-concurrency race, one event breaks
//! the hash chain: its predecessor is not stored; one was decided on a stream that has
//! moved on), nothing of it was committed, and every command of the group is
//! appended again by itself: only the command at fault gets the error. When the
//! connection fails, whether the statement committed is unknown, so every command of the
//! group gets the error, as a lone append would.

use std::sync::{Arc, OnceLock};

use berth_application::read_guard::StreamAt;
use cqrs_es::persist::{PersistenceError, SerializedEvent};
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::append::append_committed;

/// The most events one shared statement carries.
pub const MAX_EVENTS: usize = 2_000;

/// How many groups may be in flight at once: while one waits for its commit, the next
/// one gathers.
const WRITERS: usize = 2;

type Reply = oneshot::Sender<Result<Vec<i64>, PersistenceError>>;

struct Pending {
    events: Vec<SerializedEvent>,
    /// The streams the command was decided on ([`berth_application::read_guard`]).
    guards: Vec<StreamAt>,
    reply: Reply,
}

/// Gathers appends and writes them in groups. Cheap to clone (shared); its writers start
/// with the first append and end when the last clone is dropped.
#[derive(Clone)]
pub struct GroupCommitter {
    pool: Pool,
    queue: Arc<OnceLock<mpsc::UnboundedSender<Pending>>>,
}

impl GroupCommitter {
    /// A committer writing through connections of `pool`.
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            queue: Arc::new(OnceLock::new()),
        }
    }

    /// Appends `events` (one command's: one aggregate, consecutive sequences), possibly
    /// together with other commands' events; returns their global positions.
    pub async fn append(&self, events: &[SerializedEvent]) -> Result<Vec<i64>, PersistenceError> {
        self.append_guarded(events, Vec::new()).await
    }

    /// Appends `events` as [`append`](Self::append) does, unless one of the streams in
    /// `guards` has moved past the sequence given.
    pub async fn append_guarded(
        &self,
        events: &[SerializedEvent],
        guards: Vec<StreamAt>,
    ) -> Result<Vec<i64>, PersistenceError> {
        let queue = self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            let receiver = Arc::new(Mutex::new(receiver));
            for _ in 0..WRITERS {
                tokio::spawn(write_groups(self.pool.clone(), Arc::clone(&receiver)));
            }
            sender
        });
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            events: events.to_vec(),
            guards,
            reply,
        };
        if queue.send(pending).is_err() {
            return Err(closed());
        }
        answer.await.unwrap_or_else(|_| Err(closed()))
    }
}

fn closed() -> PersistenceError {
    PersistenceError::UnknownError("the group committer stopped".into())
}

async fn write_groups(pool: Pool, queue: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>) {
    loop {
        let group = {
            let mut receiver = queue.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut count = first.events.len();
            let mut group = vec![first];
            while count < MAX_EVENTS {
                match receiver.try_recv() {
                    Ok(next) => {
                        count += next.events.len();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        write(&pool, group).await;
    }
}

async fn write(pool: &Pool, mut group: Vec<Pending>) {
    let client = match pool.get().await {
        Ok(client) => client,
        Err(e) => {
            let message = format!("no database connection: {e}");
            for pending in group {
                let _ = pending.reply.send(Err(unavailable(&message)));
            }
            return;
        }
    };
    if group.len() == 1 {
        let pending = group
            .pop()
            .unwrap_or_else(|| unreachable!("one pending append"));
        let events: Vec<&SerializedEvent> = pending.events.iter().collect();
        let result = append_committed(&client, &events, &pending.guards).await;
        let _ = pending.reply.send(result);
        return;
    }
    let all: Vec<&SerializedEvent> = group.iter().flat_map(|p| p.events.iter()).collect();
    let guards: Vec<StreamAt> = group
        .iter()
        .flat_map(|p| p.guards.iter().cloned())
        .collect();
    match append_committed(&client, &all, &guards).await {
        Ok(positions) => {
            let mut positions = positions.into_iter();
            for pending in group {
                let mine: Vec<i64> = positions.by_ref().take(pending.events.len()).collect();
                let _ = pending.reply.send(Ok(mine));
            }
        }
        Err(PersistenceError::ConnectionError(e)) => {
            // Committed or not is unknown: each command hears what a lone append would.
            let message = e.to_string();
            for pending in group {
                let _ = pending.reply.send(Err(unavailable(&message)));
            }
        }
        Err(_) => {
            // Nothing was committed: each command on its own, so only the one at fault fails.
            for pending in group {
                let events: Vec<&SerializedEvent> = pending.events.iter().collect();
                let result = append_committed(&client, &events, &pending.guards).await;
                let _ = pending.reply.send(result);
            }
        }
    }
}

fn unavailable(message: &str) -> PersistenceError {
    PersistenceError::ConnectionError(message.into())
}
