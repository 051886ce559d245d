//! `tools/call` through the gateway: the tool found in the caller's view, the call let
//! through by the limits and the server's guard, sent over the server's session with
//! the client's progress and cancellation carried both ways, answered, and recorded.
//! Resource reads and prompts go the same way ([`relay`]), unrecorded.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_application::gateway::{Held, Listing, Pass, View};
use berth_infrastructure::mcp::{Upstream, UpstreamError};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorCode, ErrorData,
    ProgressNotificationParam, ResultType,
};
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::caller::GatewayCaller;
use super::record::{self, Called};
use super::redacted::{redacted, redacted_error};
use super::Shared;

/// How many progress notifications may wait for a slow client before more are dropped:
/// progress is advice, never worth holding a call up for.
const PROGRESS_BACKLOG: usize = 64;

/// The JSON-RPC error code of a call refused by a rate limit (HTTP's 429, in the range
/// JSON-RPC leaves to servers).
pub const RATE_LIMITED: i32 = -32029;

/// Why a call got no answer from its tool.
#[derive(Debug)]
enum Failure {
    Held(Held),
    Unreachable(String),
    Upstream(UpstreamError),
    Cancelled,
}

impl Failure {
    fn class(&self) -> &'static str {
        match self {
            Self::Held(Held::CircuitOpen { .. }) => "circuit_open",
            Self::Held(Held::Busy(_)) => "busy",
            Self::Unreachable(_) => "unreachable",
            Self::Upstream(UpstreamError::Timeout(_)) => "timeout",
            Self::Upstream(UpstreamError::Closed) => "closed",
            Self::Upstream(UpstreamError::Rpc(_)) => "upstream_error",
            Self::Upstream(UpstreamError::Protocol(_)) => "protocol",
            Self::Upstream(UpstreamError::Cancelled) => "cancelled",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the server, not the call, is to blame: what opens its circuit. An error
    /// the server chose to answer with is an answer.
    fn counts_against_server(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_)
                | Self::Upstream(
                    UpstreamError::Timeout(_) | UpstreamError::Closed | UpstreamError::Protocol(_)
                )
        )
    }

    /// The JSON-RPC error the client gets: the server's own when it answered with one.
    fn into_error(self, server: &str) -> ErrorData {
        let class = self.class();
        let mut data = json!({"server": server, "error_class": class});
        match self {
            Self::Upstream(UpstreamError::Rpc(error)) => error,
            Self::Held(held) => {
                if let Held::CircuitOpen {
                    retry_after: Some(after),
                } = held
                {
                    data["retry_after"] = json!(after.as_secs().max(1));
                }
                ErrorData::internal_error(format!("`{server}`: {held}"), Some(data))
            }
            Self::Unreachable(why) => ErrorData::internal_error(
                format!("the server `{server}` cannot be reached: {why}"),
                Some(data),
            ),
            Self::Upstream(other) => ErrorData::internal_error(
                format!("the server `{server}` failed the call: {other}"),
                Some(data),
            ),
            Self::Cancelled => ErrorData::internal_error("the call was cancelled", Some(data)),
        }
    }
}

/// Answers `tools/call` for `caller`, whose tools are `view`.
pub(crate) async fn call(
    shared: &Shared,
    caller: &GatewayCaller,
    view: &View,
    request: CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    let Some(found) = view.find(&request.name) else {
        return Err(ErrorData::invalid_params(
            format!("no tool named `{}` is available to you", request.name),
            None,
        ));
    };
    let listing = Arc::clone(&found.listing);
    let tool = found.tool.name.clone();
    let called = Called::new(caller, &listing, &tool, request.arguments.as_ref());
    let key_id = caller.principal.credential.key_id();
    if let Err(wait) = shared.limits.check(key_id, listing.server_id, &tool) {
        // Counted, not recorded: a runaway client must not turn its refusals into a
        // flood of events.
        shared.metrics.observe_tool_call(
            &listing.server_id.to_string(),
            &tool,
            "rate_limited",
            0.0,
        );
        return Err(rate_limited(wait));
    }
    let started = Instant::now();
    let answer = match shared
        .guards
        .pass(listing.server_id, listing.call_timeout)
        .await
    {
        Ok(pass) => forward(shared, pass, &listing, &tool, request, context).await,
        Err(held) => Err(Failure::Held(held)),
    };
    let elapsed = started.elapsed();
    match answer {
        Ok(result) => {
            record::spawn(shared, called.answered(&result, elapsed), caller);
            let mut result = redacted(&listing.redactor, result)?;
            // An older server leaves the result's type out; the newest revision requires
            // it (the SDK drops it again for clients of older ones).
            result.result_type.get_or_insert(ResultType::COMPLETE);
            Ok(CallToolResponse::Complete(result))
        }
        Err(failure) => {
            record::spawn(shared, called.failed(failure.class(), elapsed), caller);
            Err(redacted_error(
                &listing.redactor,
                failure.into_error(&listing.name),
            ))
        }
    }
}

/// Sends the call to the server and waits for its answer, its timeout, or the client's
/// cancellation; the server's progress notifications go back to the client meanwhile.
async fn forward(
    shared: &Shared,
    pass: Pass,
    listing: &Listing,
    tool: &str,
    request: CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResult, Failure> {
    let outcome = send(shared, listing, tool, request, context).await;
    settle(shared, pass, listing, &outcome);
    outcome
}

/// Tells the server's guard how the request `pass` let through ended.
fn settle<T>(shared: &Shared, pass: Pass, listing: &Listing, outcome: &Result<T, Failure>) {
    match outcome {
        // A server that stops under its calls is not failing them.
        Err(failure)
            if failure.counts_against_server() && shared.directory.has(listing.server_id) =>
        {
            pass.failed()
        }
        Err(Failure::Cancelled) => drop(pass),
        _ => pass.succeeded(),
    }
}

/// The JSON-RPC error of a request over a rate limit, saying when to try again.
fn rate_limited(wait: Duration) -> ErrorData {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    ErrorData::new(
        ErrorCode(RATE_LIMITED),
        format!("too many requests; retry after {seconds} s"),
        Some(json!({"retry_after": seconds, "status": 429})),
    )
}

/// Takes a request other than a tool call (listing or reading resources, listing or
/// getting prompts) from the caller's per-key bucket: a client doing those in a loop is
/// stopped as one calling tools.
pub(crate) fn within_key_limit(shared: &Shared, caller: &GatewayCaller) -> Result<(), ErrorData> {
    let key_id = caller.principal.credential.key_id();
    shared.limits.check_key(key_id).map_err(rate_limited)
}

/// Sends another request than a tool call (a resource read, a prompt) to `listing`'s
/// server the way a call goes: through the server's guard (its bounded concurrency, its
/// failures counted against its circuit), its answer or error redacted. The caller's
/// limit was taken before ([`within_key_limit`]).
pub(crate) async fn relay<T, F, Fut>(
    shared: &Shared,
    listing: &Listing,
    request: F,
) -> Result<T, ErrorData>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce(Arc<Upstream>) -> Fut,
    Fut: Future<Output = Result<T, UpstreamError>>,
{
    let outcome = match shared
        .guards
        .pass(listing.server_id, listing.call_timeout)
        .await
    {
        Err(held) => Err(Failure::Held(held)),
        Ok(pass) => {
            let outcome = match shared
                .sessions
                .session(listing.server_id, listing.transport, listing.call_timeout)
                .await
            {
                Err(e) => Err(Failure::Unreachable(e.to_string())),
                Ok(upstream) => request(upstream).await.map_err(Failure::Upstream),
            };
            settle(shared, pass, listing, &outcome);
            outcome
        }
    };
    match outcome {
        Ok(answer) => redacted(&listing.redactor, answer),
        Err(failure) => Err(redacted_error(
            &listing.redactor,
            failure.into_error(&listing.name),
        )),
    }
}

async fn send(
    shared: &Shared,
    listing: &Listing,
    tool: &str,
    request: CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResult, Failure> {
    let upstream = shared
        .sessions
        .session(listing.server_id, listing.transport, listing.call_timeout)
        .await
        .map_err(|e| Failure::Unreachable(e.to_string()))?;
    let mut params = CallToolRequestParams::new(tool.to_owned());
    params.arguments = request.arguments;
    let redactor = Arc::clone(&listing.redactor);
    let progress = progress_relay(context, move |message| redactor.redact(message));
    let answer = upstream
        .call_tool(
            params,
            listing.call_timeout,
            progress,
            context.ct.cancelled(),
        )
        .await;
    if matches!(answer, Err(UpstreamError::Closed)) {
        // A session through a node that stopped being the active worker fails per
        // request without ending: forget it, so the next call finds the one that is.
        use berth_application::runtime::McpSessions;
        shared.sessions.close(listing.server_id).await;
    }
    answer.map_err(|e| match e {
        UpstreamError::Cancelled => Failure::Cancelled,
        other => Failure::Upstream(other),
    })
}

/// Where the server's progress notifications about a call go: back to the client that
/// asked for progress, with the client's own token and each message passed through
/// `message`; `None` when the client asked for none.
pub(crate) fn progress_relay(
    context: &RequestContext<RoleServer>,
    message: impl Fn(&str) -> String + Send + 'static,
) -> Option<mpsc::Sender<ProgressNotificationParam>> {
    let theirs = context.meta.get_progress_token()?;
    let (to, mut notes) = mpsc::channel::<ProgressNotificationParam>(PROGRESS_BACKLOG);
    let peer = context.peer.clone();
    tokio::spawn(async move {
        while let Some(mut note) = notes.recv().await {
            note.progress_token = theirs.clone();
            note.message = note.message.map(|m| message(&m));
            if peer.notify_progress(note).await.is_err() {
                break;
            }
        }
    });
    Some(to)
}
