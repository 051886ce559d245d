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

/// States a server may be in on its way to `running`: loaded at start too, since the
/// servers read model may not show yet that one of them has arrived.
const LIVE: [ServerState; 4] = [
    ServerState::Pending,
    ServerState::Creating,
    ServerState::Starting,
    ServerState::Running,
];

/// Follows the fan-out until `shutdown`.
pub fn spawn(
    directory: Arc<Directory>,
    bus: Arc<Bus>,
    pool: Pool,
    fanout: &EventFanout,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    // Subscribed before loading: whatever happens after the load is seen.
    let mut events = fanout.subscribe();
    tokio::spawn(async move {
        let mut loaded = false;
        loop {
            if !loaded {
                loaded = reload(&directory, &bus, &pool).await;
            }
            let wait = if loaded { IDLE } else { RETRY };
            let Ok(received) =
                tokio::time::timeout(wait, receive(&mut events, &mut shutdown)).await
            else {
                continue;
            };
            match received {
                None => return,
                Some(Received::Event(event)) if event.aggregate_type == Server::TYPE => {
                    if let Ok(id) = event.aggregate_id.parse::<Uuid>() {
                        // Until it can be read again, loaded afresh every few seconds.
                        loaded &= refresh(&directory, &bus, id).await;
                    }
                }
                // Sessions through a profile look again at what it selects.
                Some(Received::Event(event)) if event.aggregate_type == Profile::TYPE => {
                    directory.touch()
                }
                Some(Received::Event(_)) => {}
                Some(Received::Missed(missed)) => {
                    tracing::info!(missed, "the gateway missed events; reloading its directory");
                    loaded = false;
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

/// Loads every listing; `false` when the store or a server could not be read.
async fn reload(directory: &Directory, bus: &Bus, pool: &Pool) -> bool {
    let ids = match pool.get().await {
        Ok(client) => berth_projections::servers::server_ids_in(&client, &LIVE).await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot load the gateway's directory");
            return false;
        }
    };
    let ids = match ids {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "cannot load the gateway's directory");
            return false;
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
    complete
}
