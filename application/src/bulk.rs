//! Bulk operations: beginning one (idempotently, with an `Idempotency-Key`), and the
//! driver that applies its action to every target and records each outcome.
//!
//! The driver is level-triggered and idempotent like the process manager: it loads the
//! operation, and for every target without an outcome issues the server's lifecycle
//! command (acting for the person who asked, with the bulk id as `correlation_id`) and
//! records how it went. A crash anywhere means running it again, which does only what is
//! left; a command that was applied but whose outcome was not recorded is recognised by
//! its metadata in the server's stream and counted as succeeded, not issued twice.

use std::sync::Arc;

use berth_domain::bulk::{BulkAction, BulkCommand, BulkError, BulkState, TargetOutcome};
use berth_domain::server::{Server, ServerError};
use berth_domain::FieldError;
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::AggregateError;
use futures_util::stream::{self, TryStreamExt};
use uuid::Uuid;

use crate::commands::CommandBus;
use crate::error::AppError;
use crate::metadata::{Actor, CommandMetadata};
use crate::receipt::Receipt;
use crate::servers::LifecycleAction;

/// The namespace of bulk ids derived from an idempotency key (UUIDv5).
const IDEMPOTENT_BULK_NAMESPACE: Uuid = Uuid::from_u128(0x6b1d_2a4e_5f0c_4c8e_9a37_0d2e_b3c1_f845);

/// The actor that records targets' outcomes (`system:bulk-operations`).
pub const BULK_DRIVER: &str = "bulk-operations";

/// The field named when an idempotency key is reused for a different request.
pub const IDEMPOTENCY_KEY_FIELD: &str = "Idempotency-Key";

impl From<BulkAction> for LifecycleAction {
    fn from(action: BulkAction) -> Self {
        match action {
            BulkAction::Start => Self::Start,
            BulkAction::Stop => Self::Stop,
            BulkAction::Restart => Self::Restart,
            BulkAction::Enable => Self::Enable,
            BulkAction::Disable => Self::Disable,
            BulkAction::Delete => Self::Delete,
        }
    }
}

/// The id of the bulk operation `actor` asks for with `idempotency_key`: the same for
/// the same actor and key, different for anyone else's.
pub fn idempotent_bulk_id(actor: &Actor, idempotency_key: &str) -> Uuid {
    let actor = actor.to_string();
    // Length-prefixed, so no actor/key pair can be spelt like another.
    let name = format!("{}:{actor}{idempotency_key}", actor.len());
    Uuid::new_v5(&IDEMPOTENT_BULK_NAMESPACE, name.as_bytes())
}

impl<R: PersistedEventRepository + Clone> CommandBus<R> {
    /// Begins a bulk operation applying `operation` to `server_ids` for the caller.
    ///
    /// Without a key the operation gets a fresh id. With one, its id derives from the
    /// caller and the key, so the same request sent again finds the operation it began
    /// and changes nothing (its receipt has no position); the same key with a different
    /// request is refused, naming [`IDEMPOTENCY_KEY_FIELD`].
    #[tracing::instrument(skip_all, fields(operation = %operation, targets = server_ids.len()))]
    pub async fn begin_bulk(
        &self,
        metadata: &CommandMetadata,
        operation: BulkAction,
        server_ids: Vec<Uuid>,
        idempotency_key: Option<String>,
    ) -> Result<(Uuid, Receipt), AppError> {
        let id = match &idempotency_key {
            Some(key) => idempotent_bulk_id(&metadata.actor, key),
            None => Uuid::now_v7(),
        };
        let mut metadata = metadata.clone();
        metadata.correlation_id = Some(id);
        let command = BulkCommand::Begin {
            operation,
            server_ids,
            requested_by: metadata.actor.to_string(),
        };
        match self.bulk(id.into(), command, &metadata).await {
            Ok(receipt) => Ok((id, receipt)),
            Err(AppError::Bulk(BulkError::BegunDifferently)) if idempotency_key.is_some() => {
                Err(AppError::Invalid(vec![FieldError::new(
                    IDEMPOTENCY_KEY_FIELD,
                    "was already used for a different bulk operation request; send a new key \
                     for a new request",
                )]))
            }
            Err(e) => Err(e),
        }
    }
}

/// How a refused lifecycle command counts for a bulk operation's target.
///
/// A server already where the action would take it counts as succeeded: `start` on a
/// server that is pending, creating, starting or running; `stop` on one that is stopped,
/// stopping or failed (nothing runs); `enable` on an enabled one, `disable` on a disabled
/// one; `delete` on one already being deleted. Every other refusal (no such server, a
/// disabled server asked to start, a transition the state forbids, a server being
/// deleted) fails with the domain's message.
pub fn outcome_of_refusal(action: LifecycleAction, error: &AppError) -> TargetOutcome {
    use LifecycleAction as A;
    let already_there = match (action, error) {
        (A::Start, AppError::Server(ServerError::InvalidTransition { from, .. })) => {
            from.is_active()
        }
        (A::Stop, AppError::Server(ServerError::InvalidTransition { .. }))
        | (A::Enable, AppError::Server(ServerError::AlreadyEnabled))
        | (A::Disable, AppError::Server(ServerError::AlreadyDisabled))
        | (A::Delete, AppError::Server(ServerError::BeingDeleted { .. })) => true,
        _ => false,
    };
    if already_there {
        return TargetOutcome::Succeeded;
    }
    let error = match error {
        AppError::Internal(cause) => {
            tracing::error!(cause = %cause, "a bulk operation's target failed with an internal error");
            "internal error; the cause was logged".to_string()
        }
        other => other.to_string(),
    };
    TargetOutcome::Failed { error }
}

/// Errors after which the driver stops and is run again later, instead of recording a
/// failure the target did not cause.
fn is_transient(error: &AppError) -> bool {
    matches!(error, AppError::Unavailable(_))
}

/// How the bulk driver behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkDriverOptions {
    /// Targets of one operation acted on at the same time.
    pub concurrency: usize,
}

impl Default for BulkDriverOptions {
    fn default() -> Self {
        Self { concurrency: 8 }
    }
}

/// What one run of the driver did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkRun {
    /// Targets it acted on (those without an outcome when it started).
    pub dispatched: usize,
    /// The operation's state when it finished.
    pub state: BulkState,
}

/// One run's fixed facts.
struct RunContext {
    bulk_id: Uuid,
    action: LifecycleAction,
    actor: Actor,
    request_id: Uuid,
    cause: Option<Uuid>,
}

impl RunContext {
    fn metadata(&self, actor: Actor) -> CommandMetadata {
        CommandMetadata {
            actor,
            request_id: self.request_id,
            correlation_id: Some(self.bulk_id),
            causation_id: self.cause,
        }
    }

    /// Whether `event` was written by this operation's command on a server: it carries
    /// the bulk id as correlation and acts for the requester (the process manager passes
    /// the correlation on, but acts for itself).
    fn wrote(&self, event: &SerializedEvent) -> bool {
        let meta = |key: &str| event.metadata.get(key).and_then(|v| v.as_str());
        meta("correlation_id") == Some(self.bulk_id.to_string().as_str())
            && meta("actor") == Some(self.actor.to_string().as_str())
    }
}

/// Applies bulk operations' actions to their targets. Share it behind an `Arc`.
pub struct BulkDriver<R: PersistedEventRepository + Clone> {
    bus: Arc<CommandBus<R>>,
    repo: R,
    options: BulkDriverOptions,
}

impl<R: PersistedEventRepository + Clone> BulkDriver<R> {
    /// A driver issuing commands through `bus`, reading servers' streams from `repo`.
    pub fn new(bus: Arc<CommandBus<R>>, repo: R, options: BulkDriverOptions) -> Self {
        Self { bus, repo, options }
    }

    /// Acts on every target of bulk operation `bulk_id` that has no outcome yet, at most
    /// `options.concurrency` at once, and records each outcome; a refused target never
    /// stops the others. `cause` is the id of the operation's `Began` event, recorded as
    /// `causation_id`.
    ///
    /// Safe to run again at any time, and beside another run of the same operation:
    /// recorded targets are skipped, and a target whose command is found in the server's
    /// stream counts as succeeded without a second command. Stops early (to be run again)
    /// only when the database is unavailable or recording keeps conflicting.
    #[tracing::instrument(skip_all, fields(bulk_id = %bulk_id))]
    pub async fn run_bulk(&self, bulk_id: Uuid, cause: Option<Uuid>) -> Result<BulkRun, AppError> {
        let bulk = self.bus.load_bulk(bulk_id.into()).await?;
        let Some(operation) = bulk.operation.filter(|_| bulk.began) else {
            return Err(BulkError::NotFound.into());
        };
        let actor = Actor::parse(&bulk.requested_by).ok_or_else(|| {
            AppError::Internal(format!(
                "bulk operation {bulk_id}: `{}` is not an actor",
                bulk.requested_by
            ))
        })?;
        let pending = bulk.pending_targets();
        if pending.is_empty() {
            return Ok(BulkRun {
                dispatched: 0,
                state: bulk.state,
            });
        }
        let run = RunContext {
            bulk_id,
            action: operation.into(),
            actor,
            request_id: Uuid::now_v7(),
            cause,
        };
        tracing::info!(operation = %operation, pending = pending.len(), "driving a bulk operation");
        // Commands on different servers run in parallel; outcomes are recorded one at a
        // time, since they all append to the same stream and would only conflict.
        let recording = tokio::sync::Mutex::new(());
        stream::iter(pending.iter().copied().map(Ok))
            .try_for_each_concurrent(self.options.concurrency.max(1), |server_id| {
                let (run, recording) = (&run, &recording);
                async move {
                    let outcome = self.act(run, server_id).await?;
                    let _turn = recording.lock().await;
                    self.record(run, server_id, outcome).await
                }
            })
            .await?;
        let state = self.bus.load_bulk(bulk_id.into()).await?.state;
        tracing::info!(state = %state, "bulk operation driven");
        Ok(BulkRun {
            dispatched: pending.len(),
            state,
        })
    }

    /// Issues the action on one server and says how it went.
    async fn act(&self, run: &RunContext, server_id: Uuid) -> Result<TargetOutcome, AppError> {
        if self.applied_before(run, server_id).await? {
            return Ok(TargetOutcome::Succeeded);
        }
        let metadata = run.metadata(run.actor.clone());
        match self
            .bus
            .server_lifecycle(&metadata, server_id.into(), run.action)
            .await
        {
            Ok(_) => Ok(TargetOutcome::Succeeded),
            Err(e) if is_transient(&e) => Err(e),
            // Refused, perhaps because another run of this operation got there first.
            Err(_) if self.applied_before(run, server_id).await? => Ok(TargetOutcome::Succeeded),
            Err(e) => Ok(outcome_of_refusal(run.action, &e)),
        }
    }

    /// Whether the server's stream already holds this operation's command.
    async fn applied_before(&self, run: &RunContext, server_id: Uuid) -> Result<bool, AppError> {
        let events = self
            .repo
            .get_events::<Server>(&server_id.to_string())
            .await
            .map_err(|e| AppError::from_aggregate(AggregateError::<ServerError>::from(e)))?;
        Ok(events.iter().any(|e| run.wrote(e)))
    }

    async fn record(
        &self,
        run: &RunContext,
        server_id: Uuid,
        outcome: TargetOutcome,
    ) -> Result<(), AppError> {
        let metadata = run.metadata(Actor::System(BULK_DRIVER.into()));
        let command = BulkCommand::RecordOutcome { server_id, outcome };
        self.bus
            .bulk(run.bulk_id.into(), command, &metadata)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use berth_domain::server::ServerState;

    use super::*;

    fn refused(action: LifecycleAction, error: ServerError) -> TargetOutcome {
        outcome_of_refusal(action, &AppError::Server(error))
    }

    fn transition(from: ServerState, command: &'static str) -> ServerError {
        ServerError::InvalidTransition { from, command }
    }

    #[test]
    fn a_server_already_where_the_action_leads_counts_as_succeeded() {
        use LifecycleAction as A;
        use ServerState as S;
        for from in [S::Pending, S::Creating, S::Starting, S::Running] {
            assert_eq!(
                refused(A::Start, transition(from, "start")),
                TargetOutcome::Succeeded
            );
        }
        for from in [S::Stopped, S::Stopping, S::Failed] {
            assert_eq!(
                refused(A::Stop, transition(from, "stop")),
                TargetOutcome::Succeeded
            );
        }
        assert_eq!(
            refused(A::Enable, ServerError::AlreadyEnabled),
            TargetOutcome::Succeeded
        );
        assert_eq!(
            refused(A::Disable, ServerError::AlreadyDisabled),
            TargetOutcome::Succeeded
        );
        assert_eq!(
            refused(A::Delete, ServerError::BeingDeleted { command: "delete" }),
            TargetOutcome::Succeeded
        );
    }

    #[test]
    fn other_refusals_fail_with_the_domain_message() {
        use LifecycleAction as A;
        let failed = |error: &str| TargetOutcome::Failed {
            error: error.into(),
        };
        assert_eq!(
            refused(A::Start, ServerError::NotFound),
            failed("server not found")
        );
        assert_eq!(
            refused(A::Start, ServerError::Disabled { command: "start" }),
            failed("cannot start a server that is disabled; enable it first")
        );
        assert_eq!(
            refused(A::Start, transition(ServerState::Stopping, "start")),
            failed("cannot start a server that is stopping")
        );
        assert_eq!(
            refused(A::Start, ServerError::BeingDeleted { command: "start" }),
            failed("cannot start a server that is being deleted")
        );
        assert_eq!(
            refused(A::Restart, transition(ServerState::Stopping, "restart")),
            failed("cannot restart a server that is stopping")
        );
        assert_eq!(
            refused(A::Delete, ServerError::NotFound),
            failed("server not found")
        );
        assert_eq!(
            outcome_of_refusal(A::Stop, &AppError::Internal("db password leaked".into())),
            failed("internal error; the cause was logged")
        );
    }

    #[test]
    fn idempotent_ids_depend_on_the_actor_and_the_key() {
        let ann = Actor::User("ann".into());
        let bob = Actor::User("bob".into());
        let id = idempotent_bulk_id(&ann, "k-1");
        assert_eq!(id, idempotent_bulk_id(&ann, "k-1"));
        assert_ne!(id, idempotent_bulk_id(&ann, "k-2"));
        assert_ne!(id, idempotent_bulk_id(&bob, "k-1"));
        assert_ne!(
            idempotent_bulk_id(&Actor::User("a".into()), "bc"),
            idempotent_bulk_id(&Actor::User("ab".into()), "c")
        );
    }

    #[test]
    fn every_bulk_action_is_a_lifecycle_action() {
        for action in BulkAction::ALL {
            assert_eq!(LifecycleAction::parse(action.as_str()), Some(action.into()));
        }
    }
}
