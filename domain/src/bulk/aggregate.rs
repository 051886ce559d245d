//! The `BulkOperation` aggregate: its commands, the decisions they lead to, and how
//! events change it.

use std::collections::HashSet;

use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::{BulkAction, BulkEvent, BulkState, TargetOutcome};
use crate::decide::handle_by_decide;
use crate::FieldError;

/// The most servers one bulk operation may target (after removing repeats).
pub const MAX_TARGETS: usize = 1000;

/// One server a bulk operation acts on, and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkTarget {
    /// The server.
    pub server_id: Uuid,
    /// `None` while the action has not been recorded for it.
    pub outcome: Option<TargetOutcome>,
}

/// One lifecycle action over many servers, with an outcome per server.
///
/// It is stored as a snapshot after every command: fields added later must have a
/// default, so snapshots written before still load.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BulkOperation {
    /// Set once `Began` is applied.
    pub began: bool,
    /// The action applied to every target.
    pub operation: Option<BulkAction>,
    /// Who asked (`user:NAME`).
    pub requested_by: String,
    /// The targets in the order asked, each once.
    pub targets: Vec<BulkTarget>,
    /// `running` until every target has an outcome.
    pub state: BulkState,
}

/// What may be asked of a bulk operation.
#[derive(Debug, Clone, PartialEq)]
pub enum BulkCommand {
    /// Begin the operation. Repeats of a server are dropped (the first occurrence keeps
    /// its place). Sent again with the same content, it changes nothing.
    Begin {
        /// The action to apply to every target.
        operation: BulkAction,
        /// The target servers, 1 to [`MAX_TARGETS`] distinct ids.
        server_ids: Vec<Uuid>,
        /// Who asks (`user:NAME`).
        requested_by: String,
    },
    /// Record how the action went for one target. A target already recorded is left as
    /// it is (no event), so the driver may report twice. Recording the last target's
    /// outcome also completes the operation.
    RecordOutcome {
        /// The target server.
        server_id: Uuid,
        /// How it went.
        outcome: TargetOutcome,
    },
}

/// Why a bulk command was refused. None of these produce events.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BulkError {
    /// No such bulk operation.
    #[error("bulk operation not found")]
    NotFound,
    /// The request breaks a rule (no targets, too many).
    #[error("invalid bulk operation")]
    Invalid(Vec<FieldError>),
    /// `Begin` for an operation that already began with another action, other targets
    /// or for someone else.
    #[error("this bulk operation already began with a different request")]
    BegunDifferently,
    /// `RecordOutcome` for a server that is not a target.
    #[error("server {server_id} is not a target of this bulk operation")]
    UnknownTarget {
        /// The server named.
        server_id: Uuid,
    },
}

/// `ids` without repeats, first occurrences in their original order.
fn distinct(ids: Vec<Uuid>) -> Vec<Uuid> {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.into_iter().filter(|id| seen.insert(*id)).collect()
}

impl BulkOperation {
    /// How many targets succeeded and failed so far.
    pub fn counts(&self) -> (u32, u32) {
        let mut succeeded = 0;
        let mut failed = 0;
        for t in &self.targets {
            match t.outcome {
                Some(TargetOutcome::Succeeded) => succeeded += 1,
                Some(TargetOutcome::Failed { .. }) => failed += 1,
                None => {}
            }
        }
        (succeeded, failed)
    }

    /// The targets that have no outcome yet, in the order asked.
    pub fn pending_targets(&self) -> Vec<Uuid> {
        self.targets
            .iter()
            .filter(|t| t.outcome.is_none())
            .map(|t| t.server_id)
            .collect()
    }

    /// Decides which events `command` produces, without changing anything.
    pub fn decide(&self, command: BulkCommand) -> Result<Vec<BulkEvent>, BulkError> {
        match command {
            BulkCommand::Begin {
                operation,
                server_ids,
                requested_by,
            } => self.decide_begin(operation, server_ids, requested_by),
            BulkCommand::RecordOutcome { server_id, outcome } => {
                self.decide_outcome(server_id, outcome)
            }
        }
    }

    fn decide_begin(
        &self,
        operation: BulkAction,
        server_ids: Vec<Uuid>,
        requested_by: String,
    ) -> Result<Vec<BulkEvent>, BulkError> {
        let server_ids = distinct(server_ids);
        if server_ids.is_empty() {
            return Err(BulkError::Invalid(vec![FieldError::new(
                "server_ids",
                "must name at least one server",
            )]));
        }
        if server_ids.len() > MAX_TARGETS {
            return Err(BulkError::Invalid(vec![FieldError::new(
                "server_ids",
                format!(
                    "must name at most {MAX_TARGETS} distinct servers (it names {})",
                    server_ids.len()
                ),
            )]));
        }
        if self.began {
            let same = self.operation == Some(operation)
                && self.requested_by == requested_by
                && self.targets.iter().map(|t| t.server_id).eq(server_ids);
            return if same {
                Ok(vec![])
            } else {
                Err(BulkError::BegunDifferently)
            };
        }
        Ok(vec![BulkEvent::Began {
            operation,
            server_ids,
            requested_by,
        }])
    }

    fn decide_outcome(
        &self,
        server_id: Uuid,
        outcome: TargetOutcome,
    ) -> Result<Vec<BulkEvent>, BulkError> {
        if !self.began {
            return Err(BulkError::NotFound);
        }
        let target = self
            .targets
            .iter()
            .find(|t| t.server_id == server_id)
            .ok_or(BulkError::UnknownTarget { server_id })?;
        if target.outcome.is_some() {
            return Ok(vec![]);
        }
        let (mut succeeded, mut failed) = self.counts();
        let event = match outcome {
            TargetOutcome::Succeeded => {
                succeeded += 1;
                BulkEvent::TargetSucceeded { server_id }
            }
            TargetOutcome::Failed { error } => {
                failed += 1;
                BulkEvent::TargetFailed { server_id, error }
            }
        };
        let mut events = vec![event];
        let recorded = usize::try_from(succeeded + failed).unwrap_or(usize::MAX);
        if recorded == self.targets.len() {
            events.push(BulkEvent::Completed {
                state: BulkState::of_finished(succeeded, failed),
                succeeded,
                failed,
            });
        }
        Ok(events)
    }

    fn set_outcome(&mut self, server_id: Uuid, outcome: TargetOutcome) {
        if let Some(t) = self.targets.iter_mut().find(|t| t.server_id == server_id) {
            t.outcome = Some(outcome);
        }
    }
}

impl Aggregate for BulkOperation {
    const TYPE: &'static str = "bulk_operation";
    type Command = BulkCommand;
    type Event = BulkEvent;
    type Error = BulkError;
    type Services = ();

    handle_by_decide!();

    fn apply(&mut self, event: Self::Event) {
        match event {
            BulkEvent::Began {
                operation,
                server_ids,
                requested_by,
            } => {
                self.began = true;
                self.operation = Some(operation);
                self.requested_by = requested_by;
                self.targets = server_ids
                    .into_iter()
                    .map(|server_id| BulkTarget {
                        server_id,
                        outcome: None,
                    })
                    .collect();
                self.state = BulkState::Running;
            }
            BulkEvent::TargetSucceeded { server_id } => {
                self.set_outcome(server_id, TargetOutcome::Succeeded);
            }
            BulkEvent::TargetFailed { server_id, error } => {
                self.set_outcome(server_id, TargetOutcome::Failed { error });
            }
            BulkEvent::Completed { state, .. } => self.state = state,
        }
    }
}
