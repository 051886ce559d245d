//! What needs the runtime: `POST /api/v1/servers/{id}/test` (an MCP handshake against the
//! running server) and `GET /api/v1/servers/{id}/logs` (its output, tail or live).

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use berth_application::runtime::{ContainerRuntime, RuntimeError};
use berth_domain::server::ServerError;
use berth_domain::ServerId;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::auth::{CommandContext, Principal};
use crate::http::extract::ApiQuery;
use crate::http::problem::{ApiError, Problem};
use crate::http::state::AppState;
use berth_application::access::{ensure_operable_server, ensure_visible};

/// The outcome of an MCP handshake against a running server.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestResult {
    /// Whether `initialize` and `tools/list` succeeded.
    pub ok: bool,
    /// How long the handshake took.
    pub latency_ms: Option<u64>,
    /// The protocol version the server agreed to.
    pub protocol_version: Option<String>,
    /// The server's `serverInfo`.
    #[schema(value_type = Object)]
    pub server_info: Option<serde_json::Value>,
    /// The tools it offers: `[{ "name", "description"? }]`.
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<serde_json::Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs the MCP handshake (`initialize`, `tools/list`) against a running server; records
/// its health and tools when they changed.
#[utoipa::path(
    post,
    path = "/api/v1/servers/{id}/test",
    tag = "servers",
    params(("id" = Uuid, Path, description = "The server's id")),
    responses(
        (status = 200, description = "The handshake's outcome (`ok` false with `error` when it failed)", body = TestResult),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may see this but its role does not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such server", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The server is not running; the detail names its state", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(server_id = %id))]
pub async fn test(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    id: web::Path<ServerId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    ensure_operable_server(&*state.owners, &principal, id, "testing a server").await?;
    let outcome = state.pm.check(id.uuid(), &metadata).await?;
    let body = match outcome.result {
        Ok(report) => TestResult {
            ok: true,
            latency_ms: Some(u64::try_from(report.latency.as_millis()).unwrap_or(u64::MAX)),
            protocol_version: Some(report.protocol_version),
            server_info: Some(report.server_info),
            tools: report
                .tools
                .iter()
                .filter_map(|t| serde_json::to_value(t).ok())
                .collect(),
            error: None,
        },
        Err(error) => TestResult {
            ok: false,
            latency_ms: None,
            protocol_version: None,
            server_info: None,
            tools: Vec::new(),
            error: Some(error),
        },
    };
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /servers/{id}/logs` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// How many of the last lines (default 100, at most 10000).
    #[param(maximum = 10000)]
    pub tail: Option<usize>,
    /// Keep the connection open and stream new lines as server-sent events.
    pub follow: Option<bool>,
}

const MAX_TAIL: usize = 10_000;

/// Lines shown when `tail` is not given.
const DEFAULT_TAIL: usize = 100;

/// The server's output: the last `tail` lines as text, or with `follow=true` those
/// lines and every new one as server-sent events (`data: <line>`).
#[utoipa::path(
    get,
    path = "/api/v1/servers/{id}/logs",
    tag = "servers",
    params(("id" = Uuid, Path, description = "The server's id"), LogsQuery),
    responses(
        (status = 200, description = "Lines of output (`text/plain`, or `text/event-stream` with `follow=true`)",
            content((String = "text/plain"), (String = "text/event-stream"))),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such server", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It has no container or process now (stopped, or not started), so no output", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`tail` out of range", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(server_id = %id))]
pub async fn logs(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<ServerId>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    ensure_visible(&*state.owners, &principal, id, "no server has this id").await?;
    let tail = query.tail.unwrap_or(DEFAULT_TAIL);
    if tail > MAX_TAIL {
        return Err(ApiError::invalid_field(
            "tail",
            format!("must be at most {MAX_TAIL}"),
        ));
    }
    let server = state.bus.load_server(id).await?;
    if !server.created || server.deleted {
        return Err(ServerError::NotFound.into());
    }
    // No container or process: say so, rather than an empty answer that reads as a
    // server that said nothing.
    let no_output = || {
        let failed = match &server.last_error {
            Some(_) => "; its `last_error` holds the last lines it wrote",
            None => "",
        };
        ApiError::Conflict(format!(
            "the server is {} and has no container or process, so no output to show{failed}",
            server.state
        ))
    };
    // Its output is where it runs.
    if let Some(url) = state.nodes.elsewhere().await.map_err(runtime_error)? {
        let url = format!(
            "{url}{}/servers/{id}/logs?tail={tail}&follow={}",
            crate::node::PREFIX,
            query.follow.unwrap_or(false)
        );
        let answer = state.nodes.get(&url).await.map_err(runtime_error)?;
        return Ok(relayed(answer));
    }
    runtime_logs(&**state.pm.runtime(), id.uuid(), &query, no_output).await
}

/// Server `id`'s output as this node's `runtime` has it: the last `query.tail` lines as
/// text, or with `follow` those and every new one as server-sent events; `no_output`
/// when the runtime has no container or process for it.
pub(crate) async fn runtime_logs(
    runtime: &dyn ContainerRuntime,
    id: uuid::Uuid,
    query: &LogsQuery,
    no_output: impl FnOnce() -> ApiError,
) -> Result<HttpResponse, ApiError> {
    let tail = query.tail.unwrap_or(DEFAULT_TAIL).min(MAX_TAIL);
    if query.follow.unwrap_or(false) {
        let lines = match runtime.follow_logs(id, tail).await {
            Ok(lines) => lines,
            Err(RuntimeError::NotFound) => return Err(no_output()),
            Err(e) => return Err(runtime_error(e)),
        };
        let events = lines.map(|line| {
            let line = line.unwrap_or_else(|e| format!("[berth] log stream ended: {e}"));
            // One SSE message per line; a line cannot contain a newline here.
            Ok::<_, actix_web::Error>(web::Bytes::from(format!("data: {line}\n\n")))
        });
        return Ok(HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "text/event-stream"))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .streaming(events));
    }
    let lines = match runtime.logs(id, tail).await {
        Ok(lines) => lines,
        Err(RuntimeError::NotFound) => return Err(no_output()),
        Err(e) => return Err(runtime_error(e)),
    };
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(text))
}

/// Another node's answer, passed on as it streams (status, type and body).
fn relayed(answer: reqwest::Response) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(answer.status().as_u16())
        .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    let mut out = HttpResponse::build(status);
    for name in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
        if let Some(value) = answer.headers().get(name.as_str()) {
            out.insert_header((name, value.as_bytes()));
        }
    }
    out.streaming(answer.bytes_stream().map(|chunk| {
        chunk
            .map_err(|e| actix_web::error::ErrorBadGateway(format!("the node's answer ended: {e}")))
    }))
}

fn runtime_error(e: RuntimeError) -> ApiError {
    match e {
        RuntimeError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
        other => ApiError::internal(other),
    }
}
