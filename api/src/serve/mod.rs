//! The composition root of `berth serve`: the database, the runtimes, the process
//! manager, the bulk driver, the checkpointer and the HTTP server, started in order and
//! stopped in reverse.

pub mod admin_token;
pub mod bootstrap;
pub mod bulk;
pub mod checkpoints;
pub mod database;
pub mod master_keys;
pub mod predefined;
pub mod role;
pub mod runtimes;
pub mod server;
pub mod worker;

pub use server::{start_server, RunningServer, ServeConfig};

/// Completes once `shutdown` turns true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here, not across an await.
    let _ = shutdown.wait_for(|s| *s).await.map(|_| ());
}

/// Follows the feed for subscription `name`, handing each batch to `handle`, until
/// `shutdown` turns true; starts again, after a pause, when the database fails it.
pub(crate) async fn follow_until_stopped<H, F, E>(
    db: &berth_infrastructure::db::Database,
    pool: &deadpool_postgres::Pool,
    name: &str,
    handle: H,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) where
    H: Fn(Vec<berth_infrastructure::feed::StoredEvent>) -> F,
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let each = shutdown.clone();
    until_stopped(
        &format!("following the event feed for {name}"),
        FOLLOW_RETRY_PAUSE,
        shutdown,
        || {
            let mut each = each.clone();
            berth_infrastructure::feed::follower::follow(
                db,
                pool,
                name,
                berth_infrastructure::feed::follow::ReaderOptions::for_followers(),
                &handle,
                async move { stopped(&mut each).await },
            )
        },
    )
    .await;
}

/// The pause before following the feed again after the database failed.
const FOLLOW_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs `attempt` until it succeeds or `shutdown` turns true, pausing `pause` after each
/// failure: the background work of a worker never gives up while it holds the lease.
pub(crate) async fn until_stopped<F, Fut, E>(
    what: &str,
    pause: std::time::Duration,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    mut attempt: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    loop {
        let outcome = tokio::select! {
            outcome = attempt() => outcome,
            () = stopped(shutdown) => return,
        };
        match outcome {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "{what} failed; trying again"),
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stopped(shutdown) => return,
        }
    }
}
