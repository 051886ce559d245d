//! `/api/v1/catalog`: list, read, register, update and remove catalog entries.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use berth_domain::catalog::{CatalogCommand, CatalogDefinition};
use berth_domain::user::Role;
use berth_domain::CatalogEntryId;
use berth_projections::{get_catalog_entry, list_catalog, CatalogEntryView, CatalogFilter, Page};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::http::auth::{CommandContext, Principal};
use crate::http::consistency::await_position;
use crate::http::dto::catalog::{CatalogEntryBody, CatalogKindDto, TransportDto};
use crate::http::dto::command::CommandAccepted;
use crate::http::extract::{ApiQuery, JsonBody};
use crate::http::pagination::page_request;
use crate::http::problem::{ApiError, Problem};
use crate::http::routes::committed_position;
use crate::http::state::AppState;

/// Query parameters of `GET /api/v1/catalog`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CatalogListQuery {
    /// Case-insensitive text searched in names and descriptions.
    pub q: Option<String>,
    /// Only entries with this transport.
    pub transport: Option<TransportDto>,
    /// Only predefined or only custom entries.
    pub kind: Option<CatalogKindDto>,
    /// Page number, from 1.
    pub page: Option<i64>,
    /// Items per page, 1 to 500 (default 50).
    pub page_size: Option<i64>,
    /// Wait (up to 5 s) until the catalog read model has reached this global position.
    pub min_position: Option<i64>,
}

/// Query parameters of `GET /api/v1/catalog/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// Wait (up to 5 s) until the read model has reached this global position.
    pub min_position: Option<i64>,
}

/// Serialises a query enum the way the read model stores it (`stdio`, `custom`).
fn wire_name<T: serde::Serialize>(value: Option<T>) -> Option<String> {
    value.and_then(|v| match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => Some(s),
        _ => None,
    })
}

/// Lists catalog entries, ordered by name.
#[utoipa::path(
    get,
    path = "/api/v1/catalog",
    tag = "catalog",
    params(CatalogListQuery),
    responses(
        (status = 200, description = "A page of catalog entries", body = Page<CatalogEntryView>),
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
    ApiQuery(query): ApiQuery<CatalogListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page_request(query.page, query.page_size)?;
    await_position(
        &state.pool,
        berth_projections::catalog::NAME,
        query.min_position,
    )
    .await?;
    let filter = CatalogFilter {
        q: query.q,
        transport: wire_name(query.transport),
        kind: wire_name(query.kind),
        visible_to: principal.owner_filter(),
    };
    let client = state.pool.get().await?;
    let entries = list_catalog(&client, &filter, page).await?;
    Ok(HttpResponse::Ok().json(entries))
}

/// Reads one catalog entry.
#[utoipa::path(
    get,
    path = "/api/v1/catalog/{id}",
    tag = "catalog",
    params(("id" = Uuid, Path, description = "The entry's id"), ReadQuery),
    responses(
        (status = 200, description = "The entry", body = CatalogEntryView),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such entry", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The read model did not reach `min_position` in time", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(catalog_id = %id))]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<CatalogEntryId>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    await_position(
        &state.pool,
        berth_projections::catalog::NAME,
        query.min_position,
    )
    .await?;
    let client = state.pool.get().await?;
    match get_catalog_entry(&client, id.uuid()).await? {
        Some(entry) if principal.is_admin() || entry.visible_to(&principal.owner()) => {
            Ok(HttpResponse::Ok().json(entry))
        }
        _ => Err(ApiError::NotFound("no catalog entry has this id".into())),
    }
}

/// Adds a custom catalog entry.
#[utoipa::path(
    post,
    path = "/api/v1/catalog",
    tag = "catalog",
    request_body = CatalogEntryBody,
    responses(
        (status = 201, description = "Registered", body = CommandAccepted,
            headers(("Berth-Position" = i64, description = "Global position of the last event written"))),
        (status = 400, description = "Malformed JSON, wrong type or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may see this but its role does not allow it (only administrators write `process` entries)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid definition", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn register(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    JsonBody(mut body): JsonBody<CatalogEntryBody>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Operator, "adding a catalog entry")?;
    state.documents.resolve(&mut body).await?;
    let definition = CatalogDefinition::from(body);
    principal.ensure_runtime_allowed(&definition)?;
    let (id, receipt) = state
        .bus
        .register_catalog_entry(&metadata, definition)
        .await?;
    let position = committed_position(&state, receipt).await?;
    Ok(CommandAccepted {
        id: id.uuid(),
        position,
    }
    .respond(StatusCode::CREATED))
}

/// Replaces what a catalog entry says; its version goes up by one.
#[utoipa::path(
    put,
    path = "/api/v1/catalog/{id}",
    tag = "catalog",
    params(("id" = Uuid, Path, description = "The entry's id")),
    request_body = CatalogEntryBody,
    responses(
        (status = 202, description = "Updated", body = CommandAccepted,
            headers(("Berth-Position" = i64, description = "Global position of the last event written"))),
        (status = 400, description = "Malformed JSON, wrong type or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may see this but its role does not allow it (only administrators write `process` entries)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such entry", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid definition", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(catalog_id = %id))]
pub async fn update(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    id: web::Path<CatalogEntryId>,
    JsonBody(mut body): JsonBody<CatalogEntryBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    state
        .bus
        .changeable_catalog_entry(&principal, id, "changing a catalog entry")
        .await?;
    state.documents.resolve(&mut body).await?;
    let definition = CatalogDefinition::from(body);
    principal.ensure_runtime_allowed(&definition)?;
    let receipt = state
        .bus
        .update_catalog_entry(&metadata, id, definition)
        .await?;
    let position = committed_position(&state, receipt).await?;
    Ok(CommandAccepted {
        id: id.uuid(),
        position,
    }
    .respond(StatusCode::ACCEPTED))
}

/// Removes a custom catalog entry; predefined entries cannot be removed.
#[utoipa::path(
    delete,
    path = "/api/v1/catalog/{id}",
    tag = "catalog",
    params(("id" = Uuid, Path, description = "The entry's id")),
    responses(
        (status = 202, description = "Removed", body = CommandAccepted,
            headers(("Berth-Position" = i64, description = "Global position of the last event written"))),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may see this but its role does not allow it (only administrators write `process` entries)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such entry", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The entry is predefined", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(catalog_id = %id))]
pub async fn remove(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    id: web::Path<CatalogEntryId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    state
        .bus
        .changeable_catalog_entry(&principal, id, "removing a catalog entry")
        .await?;
    let receipt = state.bus.remove_catalog_entry(&metadata, id).await?;
    let position = committed_position(&state, receipt).await?;
    Ok(CommandAccepted {
        id: id.uuid(),
        position,
    }
    .respond(StatusCode::ACCEPTED))
}

/// Makes a custom catalog entry visible to every user.
#[utoipa::path(
    post,
    path = "/api/v1/catalog/{id}/publish",
    tag = "catalog",
    params(("id" = Uuid, Path, description = "The entry's id")),
    responses(
        (status = 202, description = "Published", body = CommandAccepted,
            headers(("Berth-Position" = i64, description = "Global position of the last event written"))),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only administrators publish entries", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such entry (or not visible to the caller)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Predefined, or already published", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(catalog_id = %id))]
pub async fn publish(
    state: web::Data<AppState>,
    context: CommandContext,
    id: web::Path<CatalogEntryId>,
) -> Result<HttpResponse, ApiError> {
    set_visibility(
        state,
        context,
        id.into_inner().uuid(),
        CatalogCommand::Publish,
    )
    .await
}

/// Makes a custom catalog entry private to its owner again.
#[utoipa::path(
    post,
    path = "/api/v1/catalog/{id}/unpublish",
    tag = "catalog",
    params(("id" = Uuid, Path, description = "The entry's id")),
    responses(
        (status = 202, description = "Private again", body = CommandAccepted,
            headers(("Berth-Position" = i64, description = "Global position of the last event written"))),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only administrators unpublish entries", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such entry (or not visible to the caller)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Predefined, or already private", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(catalog_id = %id))]
pub async fn unpublish(
    state: web::Data<AppState>,
    context: CommandContext,
    id: web::Path<CatalogEntryId>,
) -> Result<HttpResponse, ApiError> {
    set_visibility(
        state,
        context,
        id.into_inner().uuid(),
        CatalogCommand::Unpublish,
    )
    .await
}

async fn set_visibility(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    id: Uuid,
    command: CatalogCommand,
) -> Result<HttpResponse, ApiError> {
    state
        .bus
        .visible_catalog_entry(&principal, id.into())
        .await?;
    principal.require(Role::Admin, "publishing or unpublishing a catalog entry")?;
    let receipt = state.bus.catalog(id.into(), command, &metadata).await?;
    let position = committed_position(&state, receipt).await?;
    Ok(CommandAccepted { id, position }.respond(StatusCode::ACCEPTED))
}
