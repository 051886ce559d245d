//! `GET /api/v1/servers/{id}/calls`: the tool calls made to one server through the MCP
//! gateway, newest first; `GET /api/v1/calls/{id}`: one call, with its arguments when
//! kept; `GET /api/v1/servers/{id}/gateway`: how the gateway sees a server now.

use actix_web::{web, HttpResponse};
use berth_application::access::ensure_visible;
use berth_application::gateway::recorded_call::{recorded_call, KeptArguments};
use berth_application::gateway::Circuit;
use berth_domain::tool_call::CallOutcome;
use berth_domain::{ServerId, ToolCallId};
use berth_projections::{list_calls, CallFilter, CallView, Page};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::http::auth::Principal;
use crate::http::consistency::await_position;
use crate::http::extract::ApiQuery;
use crate::http::pagination::page_request;
use crate::http::problem::{ApiError, Problem};
use crate::http::routes::audit::check_range;
use crate::http::state::AppState;

/// Query parameters of `GET /api/v1/servers/{id}/calls`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CallsQuery {
    /// The tool, as the server names it.
    pub tool: Option<String>,
    /// Who called, e.g. `user:ada`.
    pub caller: Option<String>,
    /// `ok`, `tool_error` or `failed`.
    pub outcome: Option<String>,
    /// At or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Strictly before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Page number, from 1.
    pub page: Option<i64>,
    /// Items per page, 1 to 500 (default 50).
    pub page_size: Option<i64>,
    /// Wait (up to 5 s) until the calls read model has reached this global position.
    pub min_position: Option<i64>,
}

/// Lists the calls to one server, newest first. Arguments and answers are never kept:
/// each call shows their sizes.
#[utoipa::path(
    get,
    path = "/api/v1/servers/{id}/calls",
    tag = "gateway",
    params(("id" = Uuid, Path, description = "The server's id"), CallsQuery),
    responses(
        (status = 200, description = "A page of calls, newest first", body = Page<CallView>),
        (status = 400, description = "Malformed parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such server", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Parameter out of range", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The read model did not reach `min_position` in time", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(server_id = %id))]
pub async fn calls(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<ServerId>,
    ApiQuery(query): ApiQuery<CallsQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let page = page_request(query.page, query.page_size)?;
    check_range(query.from, query.to)?;
    if let Some(outcome) = query.outcome.as_deref() {
        if CallOutcome::parse(outcome).is_none() {
            return Err(ApiError::invalid_field(
                "outcome",
                "must be `ok`, `tool_error` or `failed`",
            ));
        }
    }
    ensure_visible(&*state.owners, &principal, id, "no server has this id").await?;
    await_position(
        &state.pool,
        berth_projections::calls::NAME,
        query.min_position,
    )
    .await?;
    let filter = CallFilter {
        tool: query.tool,
        caller: query.caller,
        outcome: query.outcome,
        from: query.from,
        to: query.to,
    };
    let client = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(list_calls(&client, id.uuid(), &filter, page).await?))
}

/// One recorded tool call.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RecordedCallView {
    /// The call's id (`id` in the server's calls).
    pub id: uuid::Uuid,
    /// Who called, e.g. `user:ada`.
    pub caller: String,
    /// The credential: an API key's id, or `token:<key id>`.
    pub credential: String,
    /// The profile it went through, if any.
    pub profile: Option<String>,
    /// The server called.
    pub server_id: uuid::Uuid,
    /// Its name then.
    pub server_name: String,
    /// The tool, as the server names it.
    pub tool: String,
    /// `ok`, `tool_error` or `failed`.
    pub outcome: String,
    /// For a failed call, what kind of failure.
    pub error_class: Option<String>,
    /// How long it took, in microseconds.
    pub duration_us: u64,
    /// SHA-256 of the arguments as sent (hex).
    pub arguments_sha256: String,
    /// Size of the arguments as sent, in bytes.
    pub arguments_bytes: u64,
    /// Size of the answer, in bytes.
    pub result_bytes: u64,
    /// `not_kept` (the server's entry keeps only the digest and size), `kept`, or
    /// `shredded` (kept, but the caller was forgotten: they can never be read again).
    pub arguments_kept: String,
    /// The arguments as sent, when kept and not shredded.
    #[schema(value_type = Option<Object>)]
    pub arguments: Option<Value>,
}

/// One tool call, to its caller and administrators only; its arguments come with it when
/// its server's catalog entry keeps them (`gateway.keep_arguments`).
#[utoipa::path(
    get,
    path = "/api/v1/calls/{id}",
    tag = "gateway",
    params(("id" = Uuid, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The call", body = RecordedCallView),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call, or not yours", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(call_id = %id))]
pub async fn call(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<ToolCallId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let found = recorded_call(&state.bus, &*state.owners, &principal, id).await?;
    let (arguments_kept, arguments) = match found.arguments {
        KeptArguments::NotKept => ("not_kept", None),
        KeptArguments::Kept(value) => ("kept", Some(value)),
        KeptArguments::Shredded => ("shredded", None),
    };
    let r = found.record;
    Ok(HttpResponse::Ok().json(RecordedCallView {
        id: id.uuid(),
        caller: r.owner,
        credential: r.credential,
        profile: r.profile,
        server_id: r.server_id,
        server_name: r.server_name,
        tool: r.tool,
        outcome: r.outcome.as_str().to_owned(),
        error_class: r.error_class,
        duration_us: r.duration_us,
        arguments_sha256: r.arguments_sha256,
        arguments_bytes: r.arguments_bytes,
        result_bytes: r.result_bytes,
        arguments_kept: arguments_kept.to_owned(),
        arguments,
    }))
}

/// How the gateway sees a server now (this Berth's view: each replica has its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct GatewayView {
    /// `closed` (calls go through), `open` (calls are refused for a while after failures)
    /// or `half_open` (one call is trying whether the server recovered).
    pub circuit: String,
    /// Failures in a row so far (while closed).
    pub failures: u32,
    /// Seconds until an open circuit lets a call try again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// Calls in flight to it now.
    pub in_flight: usize,
}

/// How the MCP gateway of this Berth sees one server: its circuit and calls in flight.
#[utoipa::path(
    get,
    path = "/api/v1/servers/{id}/gateway",
    tag = "gateway",
    params(("id" = Uuid, Path, description = "The server's id")),
    responses(
        (status = 200, description = "The server's circuit and calls in flight", body = GatewayView),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such server", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(server_id = %id))]
pub async fn gateway(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<ServerId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    ensure_visible(&*state.owners, &principal, id, "no server has this id").await?;
    let guards = state.gateway.guards();
    let circuit = guards.circuit(id.uuid());
    let now = tokio::time::Instant::now();
    let (failures, retry_after_secs) = match circuit {
        Circuit::Closed { failures } => (failures, None),
        Circuit::Open { until } => (
            0,
            Some(until.saturating_duration_since(now).as_secs().max(1)),
        ),
        Circuit::HalfOpen => (0, None),
    };
    Ok(HttpResponse::Ok().json(GatewayView {
        circuit: circuit.name().to_owned(),
        failures,
        retry_after_secs,
        in_flight: guards.in_flight(id.uuid()),
    }))
}
