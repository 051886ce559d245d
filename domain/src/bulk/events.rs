//! What happened to a bulk operation, and the values its events carry.

use std::fmt;

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The lifecycle action a bulk operation applies to each of its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// Start each server.
    Start,
    /// Stop each server.
    Stop,
    /// Restart each server.
    Restart,
    /// Enable each server.
    Enable,
    /// Disable each server.
    Disable,
    /// Delete each server.
    Delete,
}

impl BulkAction {
    /// Every action, for exhaustive tests and documentation.
    pub const ALL: [BulkAction; 6] = [
        Self::Start,
        Self::Stop,
        Self::Restart,
        Self::Enable,
        Self::Disable,
        Self::Delete,
    ];

    /// The name used in the API, in events and in summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Enable => "enable",
            Self::Disable => "disable",
            Self::Delete => "delete",
        }
    }

    /// Parses the API name of an action.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for BulkAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a bulk operation is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkState {
    /// Some targets have no outcome yet.
    #[default]
    Running,
    /// Every target succeeded.
    Completed,
    /// Some targets succeeded, some failed.
    PartiallyFailed,
    /// Every target failed.
    Failed,
}

impl BulkState {
    /// The name used in the API and the read model.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::PartiallyFailed => "partially_failed",
            Self::Failed => "failed",
        }
    }

    /// The final state of an operation whose targets all have an outcome.
    pub fn of_finished(succeeded: u32, failed: u32) -> Self {
        match (succeeded, failed) {
            (_, 0) => Self::Completed,
            (0, _) => Self::Failed,
            _ => Self::PartiallyFailed,
        }
    }
}

impl fmt::Display for BulkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the action went for one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TargetOutcome {
    /// The server accepted the command, or was already where it asked to go.
    Succeeded,
    /// The server refused the command.
    Failed {
        /// Why, in words a person can act on (the domain's message).
        error: String,
    },
}

/// What happened to a bulk operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BulkEvent {
    /// The operation was asked for; its targets have no outcome yet.
    Began {
        /// The action applied to every target.
        operation: BulkAction,
        /// The target servers, each once, in the order asked.
        server_ids: Vec<Uuid>,
        /// Who asked (`user:NAME`); the per-server commands act for them.
        requested_by: String,
    },
    /// The action was accepted for one server (or it was already where it asked to go).
    TargetSucceeded {
        /// The server.
        server_id: Uuid,
    },
    /// The action was refused for one server.
    TargetFailed {
        /// The server.
        server_id: Uuid,
        /// Why.
        error: String,
    },
    /// Every target has an outcome.
    Completed {
        /// `completed`, `partially_failed` or `failed`.
        state: BulkState,
        /// Targets that succeeded.
        succeeded: u32,
        /// Targets that failed.
        failed: u32,
    },
}

impl BulkEvent {
    /// The stored `event_type` of [`BulkEvent::Began`], for readers filtering the log.
    pub const BEGAN: &'static str = "BulkOperationBegan";
    /// The stored `event_type` of [`BulkEvent::Completed`].
    pub const COMPLETED: &'static str = "BulkOperationCompleted";
}

impl DomainEvent for BulkEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Began { .. } => Self::BEGAN,
            Self::TargetSucceeded { .. } => "BulkOperationTargetSucceeded",
            Self::TargetFailed { .. } => "BulkOperationTargetFailed",
            Self::Completed { .. } => Self::COMPLETED,
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
