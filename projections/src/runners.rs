//! Running the projections: supervised in the background, caught up on demand,
//! and rebuilt from the first event.

use std::sync::Arc;
use std::time::Duration;

use berth_infrastructure::db::Database;
use berth_infrastructure::feed::follow::ReaderOptions;
use berth_infrastructure::feed::projector::{Projector, ProjectorRunner};
use berth_infrastructure::feed::{has_reached, head_position, Checkpoint};
use berth_infrastructure::StoreError;
use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::blue_green::{RebuildOptions, RebuildReport};
use crate::{
    AuditProjector, BulkProjector, CallsProjector, CatalogProjector, IdentityProjector,
    ServerProjector, PROJECTION_NAMES,
};

/// The first pause after a runner fails; it doubles on each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest pause between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A run that lasted this long counts as healthy: the next failure starts backing off anew.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How often `catch_up_all` looks again while older transactions hold events back.
const CATCH_UP_POLL: Duration = Duration::from_millis(10);

/// Why a rebuild failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// No projection has this name.
    #[error("unknown projection `{name}`; valid names are: {}", PROJECTION_NAMES.join(", "))]
    UnknownProjection {
        /// The name asked for.
        name: String,
    },
    /// Reading events or writing the read model failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The runners of the catalog, servers, audit, bulk, identity and calls projections.
pub struct Projections {
    db: Database,
    pool: Pool,
    catalog: ProjectorRunner<CatalogProjector>,
    servers: ProjectorRunner<ServerProjector>,
    audit: ProjectorRunner<AuditProjector>,
    bulk: ProjectorRunner<BulkProjector>,
    identity: ProjectorRunner<IdentityProjector>,
    calls: ProjectorRunner<CallsProjector>,
}

impl Projections {
    /// Runners reading through `pool` (and `db` for their lock and notification
    /// connections), with batches of 500 events.
    pub fn new(db: Database, pool: Pool) -> Self {
        Self::with_options(db, pool, ReaderOptions::default())
    }

    /// Runners with explicit batch size and poll interval.
    pub fn with_options(db: Database, pool: Pool, options: ReaderOptions) -> Self {
        Self {
            db: db.clone(),
            pool: pool.clone(),
            catalog: ProjectorRunner::new(
                db.clone(),
                pool.clone(),
                CatalogProjector::new(),
                options.clone(),
            ),
            servers: ProjectorRunner::new(
                db.clone(),
                pool.clone(),
                ServerProjector::new(),
                options.clone(),
            ),
            audit: ProjectorRunner::new(
                db.clone(),
                pool.clone(),
                AuditProjector::new(),
                options.clone(),
            ),
            bulk: ProjectorRunner::new(
                db.clone(),
                pool.clone(),
                BulkProjector::new(),
                options.clone(),
            ),
            identity: ProjectorRunner::new(
                db.clone(),
                pool.clone(),
                IdentityProjector::new(),
                options.clone(),
            ),
            calls: ProjectorRunner::new(db, pool, CallsProjector::new(), options),
        }
    }

    /// Runs each projection in its own task until `shutdown` turns `true` (or its sender
    /// is dropped). A runner that fails is logged and restarted after a pause that grows
    /// while failures repeat.
    pub fn spawn(self: Arc<Self>, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        vec![
            tokio::spawn(supervise(self.clone(), shutdown.clone(), |p| &p.catalog)),
            tokio::spawn(supervise(self.clone(), shutdown.clone(), |p| &p.servers)),
            tokio::spawn(supervise(self.clone(), shutdown.clone(), |p| &p.audit)),
            tokio::spawn(supervise(self.clone(), shutdown.clone(), |p| &p.bulk)),
            tokio::spawn(supervise(self.clone(), shutdown.clone(), |p| &p.identity)),
            tokio::spawn(supervise(self, shutdown, |p| &p.calls)),
        ]
    }

    /// Applies every event committed before the call to every projection. Events are
    /// held back from the feed while an older transaction is still open anywhere in the
    /// cluster, so this waits for such transactions to end.
    pub async fn catch_up_all(&self) -> Result<(), StoreError> {
        let head = head_position(&self.pool.get().await?).await?;
        self.catch_up_to(&self.catalog, head).await?;
        self.catch_up_to(&self.servers, head).await?;
        self.catch_up_to(&self.audit, head).await?;
        self.catch_up_to(&self.bulk, head).await?;
        self.catch_up_to(&self.identity, head).await?;
        self.catch_up_to(&self.calls, head).await?;
        Ok(())
    }

    /// Catches `runner` up until it has applied the event at `position`.
    async fn catch_up_to<S: Projector>(
        &self,
        runner: &ProjectorRunner<S>,
        position: i64,
    ) -> Result<Checkpoint, StoreError> {
        loop {
            let checkpoint = runner.catch_up().await?;
            if has_reached(&self.pool.get().await?, checkpoint, position).await? {
                return Ok(checkpoint);
            }
            tokio::time::sleep(CATCH_UP_POLL).await;
        }
    }

    /// Catches projection `name` up with every event committed before the call.
    pub async fn catch_up(&self, name: &str) -> Result<Checkpoint, RebuildError> {
        let client = self.pool.get().await.map_err(StoreError::from)?;
        let head = head_position(&client).await?;
        drop(client);
        match name {
            crate::catalog::NAME => Ok(self.catch_up_to(&self.catalog, head).await?),
            crate::servers::NAME => Ok(self.catch_up_to(&self.servers, head).await?),
            crate::audit::NAME => Ok(self.catch_up_to(&self.audit, head).await?),
            crate::bulk::NAME => Ok(self.catch_up_to(&self.bulk, head).await?),
            crate::identity::NAME => Ok(self.catch_up_to(&self.identity, head).await?),
            crate::calls::NAME => Ok(self.catch_up_to(&self.calls, head).await?),
            _ => Err(RebuildError::UnknownProjection {
                name: name.to_string(),
            }),
        }
    }

    /// Rebuilds projection `name` blue-green (see [`crate::blue_green`]): a fresh copy is
    /// built from the first event beside the live tables, which keep answering queries
    /// and following the feed, and is swapped in atomically once it has caught up.
    pub async fn rebuild(&self, name: &str) -> Result<RebuildReport, RebuildError> {
        self.rebuild_with(name, &RebuildOptions::default()).await
    }

    /// [`Projections::rebuild`] with explicit options.
    pub async fn rebuild_with(
        &self,
        name: &str,
        options: &RebuildOptions,
    ) -> Result<RebuildReport, RebuildError> {
        self.rebuild_pausing(name, options, std::future::ready(()))
            .await
    }

    /// [`Projections::rebuild_with`], awaiting `before_swap` once the copy has caught
    /// up and before it is swapped in: the live projection may move on meanwhile, and
    /// the swap brings the copy level with it.
    pub async fn rebuild_pausing(
        &self,
        name: &str,
        options: &RebuildOptions,
        before_swap: impl std::future::Future<Output = ()>,
    ) -> Result<RebuildReport, RebuildError> {
        use crate::blue_green::rebuild;
        let (db, pool, pause) = (&self.db, &self.pool, before_swap);
        let report = match name {
            crate::catalog::NAME => {
                rebuild::<CatalogProjector>(db, pool, name, crate::catalog::TABLES, options, pause)
                    .await
            }
            crate::servers::NAME => {
                rebuild::<ServerProjector>(db, pool, name, crate::servers::TABLES, options, pause)
                    .await
            }
            crate::audit::NAME => {
                rebuild::<AuditProjector>(db, pool, name, crate::audit::TABLES, options, pause)
                    .await
            }
            crate::bulk::NAME => {
                rebuild::<BulkProjector>(db, pool, name, crate::bulk::TABLES, options, pause).await
            }
            crate::calls::NAME => {
                rebuild::<CallsProjector>(db, pool, name, crate::calls::TABLES, options, pause)
                    .await
            }
            crate::identity::NAME => {
                rebuild::<IdentityProjector>(
                    db,
                    pool,
                    name,
                    crate::identity::TABLES,
                    options,
                    pause,
                )
                .await
            }
            _ => {
                return Err(RebuildError::UnknownProjection {
                    name: name.to_string(),
                })
            }
        }?;
        Ok(report)
    }

    /// Follows the checkpoint of projection `name` as its batches commit in this process.
    pub fn progress(&self, name: &str) -> Option<watch::Receiver<Checkpoint>> {
        match name {
            crate::catalog::NAME => Some(self.catalog.progress()),
            crate::servers::NAME => Some(self.servers.progress()),
            crate::audit::NAME => Some(self.audit.progress()),
            crate::bulk::NAME => Some(self.bulk.progress()),
            crate::identity::NAME => Some(self.identity.progress()),
            crate::calls::NAME => Some(self.calls.progress()),
            _ => None,
        }
    }
}

/// Completes once `shutdown` is `true` or can no longer change.
async fn shutdown_signal(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn supervise<S: Projector + 'static>(
    projections: Arc<Projections>,
    shutdown: watch::Receiver<bool>,
    pick: fn(&Projections) -> &ProjectorRunner<S>,
) {
    let runner = pick(&projections);
    let name = runner.projector().name().to_string();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let result = runner.run(shutdown_signal(shutdown.clone())).await;
        let error = match result {
            Ok(()) => return,
            Err(e) => e,
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
        }
        tracing::error!(
            projection = %name,
            error = %berth_infrastructure::error::causes(&error),
            retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
            "projection failed; restarting"
        );
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown_signal(shutdown.clone()) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
