//! Every call through the gateway, as an event: who called which tool of which server,
//! how long it took and how it ended; what was sent only as a digest and a size.
//!
//! The event is appended after the answer went out, through the group commit the
//! commands share, so recording adds no round trip to the call. A Berth killed between
//! the two loses that record; nothing else.

use std::sync::Arc;
use std::time::Duration;

use berth_application::gateway::Listing;
use berth_domain::tool_call::{CallOutcome, ToolCallRecord};
use rmcp::model::{CallToolResult, JsonObject};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::caller::GatewayCaller;
use super::Shared;
use crate::http::auth::Credential;

/// A call under way: what is known before its answer.
pub(crate) struct Called {
    record: ToolCallRecord,
}

impl Called {
    pub fn new(
        caller: &GatewayCaller,
        listing: &Listing,
        tool: &str,
        arguments: Option<&JsonObject>,
    ) -> Self {
        let sent = arguments
            .map(|a| serde_json::to_vec(a).unwrap_or_default())
            .unwrap_or_default();
        let credential = match &caller.principal.credential {
            Credential::ApiKey { key_id } => key_id.to_string(),
            Credential::Token { key_id, .. } => format!("token:{key_id}"),
        };
        Self {
            record: ToolCallRecord {
                owner: caller.owner(),
                credential,
                profile: caller.profile_name().map(str::to_owned),
                server_id: listing.server_id,
                server_name: listing.name.clone(),
                tool: tool.to_owned(),
                duration_us: 0,
                outcome: CallOutcome::Failed,
                error_class: None,
                arguments_sha256: hex::encode(Sha256::digest(&sent)),
                arguments_bytes: sent.len() as u64,
                result_bytes: 0,
            },
        }
    }

    /// The record of a call its tool answered.
    pub fn answered(mut self, result: &CallToolResult, took: Duration) -> ToolCallRecord {
        self.record.duration_us = micros(took);
        self.record.outcome = if result.is_error == Some(true) {
            CallOutcome::ToolError
        } else {
            CallOutcome::Ok
        };
        self.record.result_bytes = serde_json::to_vec(result).map_or(0, |b| b.len() as u64);
        self.record
    }

    /// The record of a call that got no answer.
    pub fn failed(mut self, class: &str, took: Duration) -> ToolCallRecord {
        self.record.duration_us = micros(took);
        self.record.outcome = CallOutcome::Failed;
        self.record.error_class = Some(class.to_owned());
        self.record
    }
}

fn micros(took: Duration) -> u64 {
    u64::try_from(took.as_micros()).unwrap_or(u64::MAX)
}

/// Counts the call in the metrics and appends its record in the background.
pub(crate) fn spawn(shared: &Shared, record: ToolCallRecord, caller: &GatewayCaller) {
    shared.metrics.observe_tool_call(
        &record.server_id.to_string(),
        &record.tool,
        record.outcome.as_str(),
        Duration::from_micros(record.duration_us).as_secs_f64(),
    );
    let bus = Arc::clone(&shared.bus);
    let mut metadata = caller.metadata.clone();
    metadata.correlation_id = Some(metadata.request_id);
    tokio::spawn(async move {
        let call_id = Uuid::now_v7();
        if let Err(e) = bus.record_tool_call(call_id, record, &metadata).await {
            tracing::warn!(error = %e, "a tool call could not be recorded");
        }
    });
}
