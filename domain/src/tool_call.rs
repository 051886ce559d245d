//! A tool call through the gateway: a stream of its own holding one event, so that every
//! call is in the log (and so in the audit trail, the calls read model and the live
//! stream) without touching the server's own stream, which calls would otherwise make a
//! point of contention for every caller at once.
//!
//! What was sent and answered is never stored in plaintext: a digest and a size, and the
//! arguments sealed under the caller's data key when the server's entry asks to keep them.

use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decide::handle_by_decide;
use crate::server::SealedSecret;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// The tool answered.
    Ok,
    /// The tool answered with `isError`: it ran, and said it failed.
    ToolError,
    /// No answer: the server failed, timed out, or the gateway refused the call.
    Failed,
}

impl CallOutcome {
    /// Every outcome.
    pub const ALL: [CallOutcome; 3] = [Self::Ok, Self::ToolError, Self::Failed];

    /// The name used in the API, in events and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ToolError => "tool_error",
            Self::Failed => "failed",
        }
    }

    /// Parses the API name of an outcome.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// Everything recorded of one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    /// Who called (`user:NAME`); the stream's owner.
    pub owner: String,
    /// The credential the call came with: an API key's id, or `token`.
    pub credential: String,
    /// The profile the call went through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The server called.
    pub server_id: Uuid,
    /// Its name then.
    pub server_name: String,
    /// The tool, as the server names it.
    pub tool: String,
    /// How long the call took, in microseconds.
    pub duration_us: u64,
    /// How it ended.
    pub outcome: CallOutcome,
    /// For a failed call, what kind of failure (`timeout`, `closed`, `upstream_error`,
    /// `circuit_open`, `rate_limited`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// SHA-256 of the arguments as sent (hex).
    pub arguments_sha256: String,
    /// Size of the arguments as sent, in bytes.
    pub arguments_bytes: u64,
    /// Size of the answer, in bytes (0 without one).
    pub result_bytes: u64,
    /// The arguments as sent, sealed under the caller's data key for the call's stream
    /// (key [`ARGUMENTS_KEY`]), when the server's catalog entry keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<SealedSecret>,
}

/// The name the arguments of a call are sealed under (with the call's id and its caller
/// as associated data, so they open nowhere else).
pub const ARGUMENTS_KEY: &str = "arguments";

/// The one command: record the call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToolCallCommand {
    /// Record it.
    Record(ToolCallRecord),
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolCallEvent {
    /// The call was made (whatever its outcome).
    Called(ToolCallRecord),
}

impl ToolCallEvent {
    /// The stored type of [`ToolCallEvent::Called`].
    pub const CALLED: &'static str = "ToolCalled";
}

impl DomainEvent for ToolCallEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Called(_) => Self::CALLED.to_string(),
        }
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// Why a call cannot be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolCallError {
    /// The stream already holds its call.
    #[error("this call is already recorded")]
    AlreadyRecorded,
}

/// One call's stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// What was recorded, once it was.
    pub record: Option<ToolCallRecord>,
}

impl ToolCall {
    /// Decides what a command produces.
    pub fn decide(&self, command: ToolCallCommand) -> Result<Vec<ToolCallEvent>, ToolCallError> {
        match command {
            ToolCallCommand::Record(_) if self.record.is_some() => {
                Err(ToolCallError::AlreadyRecorded)
            }
            ToolCallCommand::Record(record) => Ok(vec![ToolCallEvent::Called(record)]),
        }
    }
}

impl Aggregate for ToolCall {
    const TYPE: &'static str = "tool";
    type Command = ToolCallCommand;
    type Event = ToolCallEvent;
    type Error = ToolCallError;
    type Services = ();

    handle_by_decide!();

    fn apply(&mut self, event: Self::Event) {
        match event {
            ToolCallEvent::Called(record) => self.record = Some(record),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ToolCallRecord {
        ToolCallRecord {
            owner: "user:ann".into(),
            credential: "key-1".into(),
            profile: None,
            server_id: Uuid::nil(),
            server_name: "files".into(),
            tool: "read".into(),
            duration_us: 1200,
            outcome: CallOutcome::Ok,
            error_class: None,
            arguments_sha256: "00".into(),
            arguments_bytes: 2,
            result_bytes: 10,
            arguments: None,
        }
    }

    #[test]
    fn a_call_is_recorded_once() {
        let mut call = ToolCall::default();
        let events = call.decide(ToolCallCommand::Record(record())).unwrap();
        assert_eq!(events, [ToolCallEvent::Called(record())]);
        call.apply(events[0].clone());
        assert_eq!(
            call.decide(ToolCallCommand::Record(record())),
            Err(ToolCallError::AlreadyRecorded)
        );
    }

    #[test]
    fn the_event_is_tagged_for_the_audit_action_and_carries_its_owner() {
        let json = serde_json::to_value(ToolCallEvent::Called(record())).unwrap();
        assert_eq!(json["type"], "called");
        assert_eq!(json["owner"], "user:ann");
        assert_eq!(json["outcome"], "ok");
        assert!(json.get("profile").is_none());
    }
}
