//! Keeps the gateway's directory true to the log: loaded from the store at start, then
//! each server event from the live fan-out (the one feed reader of this Berth) refreshes
//! that server's listing, so a server that starts, stops, fails or reports new tools
//! changes every connected session's tool list at once.

use std::sync::Arc;
use std::time::Duration;

use berth_application::gateway::{listing_of, Directory};
use berth_domain::profile::Profile;
use berth_domain::server::{Server, ServerState};
use berth_infrastructure::feed::fanout::{receive, EventFanout, Received};
use berth_infrastructure::feed::{head_checkpoint, Checkpoint};
use cqrs_es::Aggregate;
use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::http::state::Bus;

/// How long the loop sleeps with nothing to do (events wake it).
const IDLE: Duration = Duration::from_secs(3600);

/// How long to wait before loading again after the store could not be read.
const RETRY: Duration = Duration::from_secs(2);

/// How long a load waits for the servers read model to reach the log's head.
const RELOAD_WAIT: Duration = Duration::from_secs(5);

/// How long a request waits for the directory to take in what is already committed.
const CATCH_UP: Duration = Duration::from_secs(3);

/// States a server may be in on its way to `running`: loaded at start too, since the
/// servers read model may not show yet that one of them has arrived.
const LIVE: [ServerState; 4] = [
    ServerState::Pending,
    ServerState::Creating,
    ServerState::Starting,
    ServerState::Running,
];

/// How far the directory has followed the log. The directory is a moment behind the
/// log, and the servers read model follows it separately: a client that saw a server
/// `running` through the API and calls one of its tools at once could otherwise be told
/// the tool does not exist. A request that finds nothing, or lists, first waits until
/// the directory holds every change committed before it ([`DirectoryProgress::caught_up`]).
pub struct DirectoryProgress {
    applied: watch::Sender<Checkpoint>,
    pool: Pool,
}

impl DirectoryProgress {
    /// Nothing applied yet; heads are read from `pool`.
    pub fn new(pool: Pool) -> Self {
        Self {
            applied: watch::Sender::new(Checkpoint::START),
            pool,
        }
    }

    /// The directory holds every change up to `checkpoint`.
    fn applied(&self, checkpoint: Checkpoint) {
        self.applied.send_if_modified(|applied| {
            let later = checkpoint > *applied;
            if later {
                *applied = checkpoint;
            }
            later
        });
    }

    /// Waits (a few seconds at most) until the directory holds every change committed
    /// before the call; `false` when it did not get there or the head cannot be read,
    /// and the directory answers as it is.
    pub async fn caught_up(&self) -> bool {
        // Reading the head counts against the wait too: a busy pool must not hold the
        // request longer.
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        let head = tokio::time::timeout_at(deadline, async {
            let client = self.pool.get().await.ok()?;
            head_checkpoint(&client).await.ok()
        })
        .await;
        let Ok(Some(head)) = head else {
            return false;
        };
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout_at(deadline, applied.wait_for(|at| *at >= head)).await;
        matches!(reached, Ok(Ok(_)))
    }
}

/// Follows the fan-out until `shutdown`, telling `progress` how far it got.
pub fn spawn(
    directory: Arc<Directory>,
    progress: Arc<DirectoryProgress>,
    bus: Arc<Bus>,
    fanout: &EventFanout,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    // Subscribed before loading: whatever happens after the load is seen.
    let mut events = fanout.subscribe();
    tokio::spawn(async move {
        let mut loaded = false;
        // Whether the directory holds every change up to its last load and every event
        // since: a server it could not read is left out on purpose, which keeps it current;
        // a load the servers read model was behind for, or missed events, do not.
        let mut current = false;
        loop {
            if !loaded {
                (loaded, current) = reload(&directory, &progress, &bus).await;
            }
            let wait = if loaded { IDLE } else { RETRY };
            let Ok(received) =
                tokio::time::timeout(wait, receive(&mut events, &mut shutdown)).await
            else {
                continue;
            };
            match received {
                None => return,
                Some(Received::Event(event)) => {
                    if event.aggregate_type == Server::TYPE {
                        if let Ok(id) = event.aggregate_id.parse::<Uuid>() {
                            // Until it can be read again, loaded afresh every few seconds.
                            loaded &= refresh(&directory, &bus, id).await;
                        }
                    } else if event.aggregate_type == Profile::TYPE {
                        // Sessions through a profile look again at what it selects.
                        directory.touch();
                    }
                    // Until it is current again, a request waits for it, and answers as
                    // it is after a few seconds.
                    if current {
                        progress.applied(event.checkpoint());
                    }
                }
                Some(Received::Missed(missed)) => {
                    tracing::info!(missed, "the gateway missed events; reloading its directory");
                    loaded = false;
                    current = false;
                }
            }
        }
    })
}

/// Refreshes server `id`'s listing; `false` when it could not be read. The server then
/// leaves the directory: what changed may be who may use it (its sharing), and its
/// answers cannot be vetted for its secrets without reading them.
async fn refresh(directory: &Directory, bus: &Bus, id: Uuid) -> bool {
    match listing_of(bus, id.into()).await {
        Ok(listing) => {
            directory.set(id, listing);
            true
        }
        Err(e) => {
            tracing::warn!(server_id = %id, error = %e, "cannot refresh a server in the gateway; it is left out until it can");
            directory.set(id, None);
            false
        }
    }
}

/// Loads every listing. Says whether every server could be read, and whether the
/// directory is current (the store and the servers read model could be read up to the
/// head; a server that could not be read is left out on purpose).
async fn reload(directory: &Directory, progress: &DirectoryProgress, bus: &Bus) -> (bool, bool) {
    // The head is read first: whatever the load misses comes after it, through the
    // fan-out (subscribed before this load). The read model that names the live servers
    // must have reached it, or a server that arrived just before would be left out.
    let ids = async {
        let head = head_checkpoint(&progress.pool.get().await?).await?;
        let reached = berth_projections::wait_until_reached(
            &progress.pool,
            berth_projections::servers::NAME,
            head.position,
            RELOAD_WAIT,
        )
        .await?;
        let client = progress.pool.get().await?;
        let ids = berth_projections::servers::server_ids_in(&client, &LIVE).await?;
        Ok::<_, berth_infrastructure::StoreError>((head, reached, ids))
    };
    let (head, reached, ids) = match ids.await {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::warn!(error = %e, "cannot load the gateway's directory");
            return (false, false);
        }
    };
    let mut listings = Vec::new();
    let mut complete = true;
    for id in ids {
        match listing_of(bus, id.into()).await {
            Ok(Some(listing)) => listings.push(listing),
            Ok(None) => {}
            // Left out (see `refresh`), and tried again with the next load.
            Err(e) => {
                tracing::warn!(server_id = %id, error = %e, "cannot load a server into the gateway");
                complete = false;
            }
        }
    }
    directory.replace_all(listings);
    if !reached {
        // Loaded again shortly, until the read model has caught up.
        tracing::info!("the servers read model is behind; the gateway loads its directory again");
        return (false, false);
    }
    progress.applied(head);
    (complete, true)
}
