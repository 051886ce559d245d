//! `GET /api/v1/servers/{id}/calls`: the tool calls made to one server through the MCP
//! gateway, newest first; `GET /api/v1/servers/{id}/gateway`: how the gateway sees it now.

use actix_web::{web, HttpResponse};
use berth_application::access::ensure_visible;
use berth_application::gateway::Circuit;
use berth_domain::tool_call::CallOutcome;
use berth_domain::ServerId;
use berth_projections::{list_calls, CallFilter, CallView, Page};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
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
