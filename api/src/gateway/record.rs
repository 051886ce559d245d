//! Every call through the gateway, as an event: who called which tool of which server,
//! how long it took and how it ended; what was sent as a digest and a size, and sealed
//! under the caller's data key when the server's entry keeps arguments.
//!
//! The event is appended after the answer went out, through the group commit the
//! commands share, so recording adds no round trip to the call. A clean stop waits for
//! the appends under way; a Berth killed between answer and append loses that record,
//! nothing else.

use std::sync::Arc;
use std::time::Duration;

use berth_application::gateway::Listing;
use berth_domain::tool_call::{CallOutcome, ToolCallRecord, ARGUMENTS_KEY};
use rmcp::model::{CallToolResult, JsonObject};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::caller::GatewayCaller;
use super::Shared;
use crate::http::auth::Credential;

/// A call under way: what is known before its answer.
pub(crate) struct Called {
    record: ToolCallRecord,
    /// The arguments to seal with the record, when its entry keeps them.
    kept: Option<SecretString>,
}

/// A call with its answer (or its failure), ready to be recorded.
pub(crate) struct Finished {
    record: ToolCallRecord,
    kept: Option<SecretString>,
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
            Credential::Session { key_id, .. } => format!("session:{key_id}"),
        };
        // The text is built once: what is sealed is exactly what the digest covers.
        let kept = listing
            .keep_arguments
            .then(|| SecretString::from(String::from_utf8_lossy(&sent).into_owned()));
        Self {
            kept,
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
                arguments: None,
            },
        }
    }

    /// The record of a call its tool answered.
    pub fn answered(mut self, result: &CallToolResult, took: Duration) -> Finished {
        self.record.duration_us = micros(took);
        self.record.outcome = if result.is_error == Some(true) {
            CallOutcome::ToolError
        } else {
            CallOutcome::Ok
        };
        self.record.result_bytes = serde_json::to_vec(result).map_or(0, |b| b.len() as u64);
        self.finish()
    }

    /// The record of a call that got no answer.
    pub fn failed(mut self, class: &str, took: Duration) -> Finished {
        self.record.duration_us = micros(took);
        self.record.outcome = CallOutcome::Failed;
        self.record.error_class = Some(class.to_owned());
        self.finish()
    }

    fn finish(self) -> Finished {
        Finished {
            record: self.record,
            kept: self.kept,
        }
    }
}

fn micros(took: Duration) -> u64 {
    u64::try_from(took.as_micros()).unwrap_or(u64::MAX)
}

/// Counts the call in the metrics and appends its record in the background (sealing its
/// arguments first when they are kept).
pub(crate) fn spawn(shared: &Shared, finished: Finished, caller: &GatewayCaller) {
    let Finished { mut record, kept } = finished;
    shared.metrics.observe_tool_call(
        &record.server_id.to_string(),
        &record.tool,
        record.outcome.as_str(),
        Duration::from_micros(record.duration_us).as_secs_f64(),
    );
    let bus = Arc::clone(&shared.bus);
    let mut metadata = caller.metadata.clone();
    metadata.correlation_id = Some(metadata.request_id);
    shared.records.spawn(async move {
        let call_id = Uuid::now_v7();
        if let Some(arguments) = kept {
            record.arguments = seal(&bus, &record.owner, call_id, &arguments).await;
        }
        if let Err(e) = bus.record_tool_call(call_id, record, &metadata).await {
            tracing::warn!(error = %e, "a tool call could not be recorded");
        }
    });
}

/// The arguments sealed for call `call_id` of `owner`, or `None` (logged) when the
/// caller's data key cannot be had: the call is recorded all the same, with its digest.
async fn seal(
    bus: &crate::http::state::Bus,
    owner: &str,
    call_id: Uuid,
    arguments: &SecretString,
) -> Option<berth_domain::server::SealedSecret> {
    let cipher = bus.cipher();
    let sealed = match cipher.prepare(owner).await {
        Ok(()) => cipher.seal(owner, call_id, ARGUMENTS_KEY, arguments),
        Err(e) => Err(e),
    };
    sealed
        .inspect_err(
            |e| tracing::warn!(error = %e, "the arguments of a tool call could not be sealed"),
        )
        .ok()
}
