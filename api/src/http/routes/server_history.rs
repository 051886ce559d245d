//! `GET /api/v1/servers/{id}/history`: every change of one server, oldest first, with
//! who made it and what it changed, field by field.

use actix_web::{web, HttpResponse};
use berth_domain::ServerId;
use berth_projections::servers::{server_history, HistoryEntry};
use berth_projections::Page;

use crate::http::auth::Principal;
use crate::http::extract::ApiQuery;
use crate::http::pagination::{page_request, PageQuery};
use crate::http::problem::{ApiError, Problem};
use crate::http::state::AppState;
use berth_application::access::ensure_visible;

/// Lists every event of one server, oldest first (a deleted server's included), each
/// with its position, sequence, time, actor, type and what it changed:
/// `changes: [{field, from, to}]` between the server's state before and after it
/// (`state`, `enabled`, `health`, `config.KEY`, `restart_policy`, `tools`, …). A secret
/// set, changed or removed shows as `secrets.KEY` with `"********"` or `null`, never
/// its value.
#[utoipa::path(
    get,
    path = "/api/v1/servers/{id}/history",
    tag = "servers",
    params(("id" = Uuid, Path, description = "The server's id"), PageQuery),
    responses(
        (status = 200, description = "A page of the server's changes, oldest first", body = Page<HistoryEntry>),
        (status = 400, description = "Malformed parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such server", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Parameter out of range", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(server_id = %id))]
pub async fn history(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<ServerId>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let page = page_request(query.page, query.page_size)?;
    ensure_visible(&*state.owners, &principal, id, "no server has this id").await?;
    let client = state.pool.get().await?;
    match server_history(&client, id.uuid(), page).await? {
        Some(history) => Ok(HttpResponse::Ok().json(history)),
        None => Err(ApiError::NotFound("no server has this id".into())),
    }
}
