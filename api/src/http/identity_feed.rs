//! Keeps authentication true to identity changes made elsewhere: another replica, or
//! the command line beside a running Berth (`berth users disable`). Each user event on
//! the live fan-out clears the verified keys once the identity read model, which
//! authentication reads, has applied it. Changes made through this process's own API
//! clear them as they settle, without waiting for this.

use std::sync::Arc;
use std::time::Duration;

use berth_domain::user::User;
use berth_infrastructure::feed::fanout::{receive, EventFanout, Received};
use berth_projections::wait_until_reached;
use cqrs_es::Aggregate;
use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::auth::Authenticator;

/// The longest wait for the identity read model to reach a change; the keys are cleared
/// then whatever it reached (and expire by themselves in any case).
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Follows the fan-out until `shutdown`.
pub fn spawn(
    auth: Arc<Authenticator>,
    pool: Pool,
    fanout: &EventFanout,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut events = fanout.subscribe();
    tokio::spawn(async move {
        while let Some(received) = receive(&mut events, &mut shutdown).await {
            let position = match received {
                Received::Event(event) if event.aggregate_type == User::TYPE => {
                    Some(event.position)
                }
                Received::Event(_) => continue,
                // Changes may have been missed: start over now, and again once the read
                // model has caught up with the log.
                Received::Missed(_) => None,
            };
            auth.identities_changed();
            let auth = Arc::clone(&auth);
            let pool = pool.clone();
            tokio::spawn(async move {
                let position = match position {
                    Some(position) => position,
                    None => match head(&pool).await {
                        Some(head) => head,
                        None => return,
                    },
                };
                let name = berth_projections::identity::NAME;
                if let Err(e) = wait_until_reached(&pool, name, position, MAX_WAIT).await {
                    tracing::warn!(error = %e, "cannot tell whether the identity read model reached a change");
                }
                auth.identities_changed();
            });
        }
    })
}

async fn head(pool: &Pool) -> Option<i64> {
    let client = pool.get().await.ok()?;
    berth_infrastructure::feed::head_position(&client)
        .await
        .ok()
}
