//! `GET /api/v1/audit`: who did what, when, newest first.

use actix_web::{web, HttpResponse};
use berth_projections::{list_audit, AuditEntry, AuditFilter, Page};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::http::auth::Principal;
use crate::http::consistency::await_position;
use crate::http::extract::ApiQuery;
use crate::http::pagination::page_request;
use crate::http::problem::{ApiError, Problem};
use crate::http::state::AppState;

/// Query parameters of `GET /api/v1/audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Who acted, e.g. `user:admin` or `system:process-manager`.
    pub actor: Option<String>,
    /// Only entries about this server.
    pub server_id: Option<Uuid>,
    /// The action, e.g. `server.start_requested`.
    pub action: Option<String>,
    /// At or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Strictly before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Only entries of this unit of work (e.g. a bulk operation).
    pub correlation_id: Option<Uuid>,
    /// Page number, from 1.
    pub page: Option<i64>,
    /// Items per page, 1 to 500 (default 50).
    pub page_size: Option<i64>,
    /// Wait (up to 5 s) until the audit read model has reached this global position.
    pub min_position: Option<i64>,
}

/// Checks that a time range is not inverted.
pub fn check_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Result<(), ApiError> {
    match (from, to) {
        (Some(f), Some(t)) if f > t => {
            Err(ApiError::invalid_field("to", "must not be before `from`"))
        }
        _ => Ok(()),
    }
}

/// Lists the audit trail, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of audit entries, newest first", body = Page<AuditEntry>),
        (status = 400, description = "Malformed parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Parameter out of range", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The read model did not reach `min_position` in time", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page_request(query.page, query.page_size)?;
    check_range(query.from, query.to)?;
    await_position(
        &state.pool,
        berth_projections::audit::NAME,
        query.min_position,
    )
    .await?;
    let filter = AuditFilter {
        actor: query.actor,
        server_id: query.server_id,
        action: query.action,
        from: query.from,
        to: query.to,
        correlation_id: query.correlation_id,
        owner: principal.owner_filter(),
    };
    let client = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(list_audit(&client, &filter, page).await?))
}
