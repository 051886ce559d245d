//! `/api/v1/servers`: list, read, create servers and change their config.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use berth_domain::user::Role;
use berth_domain::ServerId;
use berth_projections::servers::{server_as_of, AsOf, PastServer};
use berth_projections::{get_server, list_servers, Page, ServerFilter, ServerView};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::auth::{CommandContext, Principal};
use crate::http::consistency::await_position;
use crate::http::dto::command::CommandAccepted;
use crate::http::dto::servers::{CreateServerBody, PatchServerBody};
use crate::http::extract::{ApiQuery, JsonBody};
use crate::http::pagination::page_request;
use crate::http::problem::{ApiError, Problem};
use crate::http::routes::committed_position;
use crate::http::state::AppState;
use berth_application::access::{ensure_operable_server, ensure_visible};

/// A server's lifecycle state, as a list filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServerStateDto {
    /// Not running.
    Stopped,
    /// Asked to start; waiting for the runtime.
    Pending,
    /// Its container or process is being created.
    Creating,
    /// Created; being started.
    Starting,
    /// Running.
    Running,
    /// Asked to stop; waiting for the runtime.
    Stopping,
    /// Could not start, or exited unexpectedly.
    Failed,
}

impl ServerStateDto {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Pending => "pending",
            Self::Creating => "creating",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Failed => "failed",
        }
    }
}

/// Query parameters of `GET /api/v1/servers`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ServerListQuery {
    /// Only servers in this state.
    pub state: Option<ServerStateDto>,
    /// Only servers of this catalog entry.
    pub catalog_id: Option<Uuid>,
    /// Case-insensitive text searched in names.
    pub q: Option<String>,
    /// Page number, from 1.
    pub page: Option<i64>,
    /// Items per page, 1 to 500 (default 50).
    pub page_size: Option<i64>,
    /// Wait (up to 5 s) until the servers read model has reached this global position.
    pub min_position: Option<i64>,
}

/// Lists servers, ordered by name.
#[utoipa::path(
    get,
    path = "/api/v1/servers",
    tag = "servers",
    params(ServerListQuery),
    responses(
        (status = 200, description = "A page of servers", body = Page<ServerView>),
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
    ApiQuery(query): ApiQuery<ServerListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page_request(query.page, query.page_size)?;
    await_position(
        &state.pool,
        berth_projections::servers::NAME,
        query.min_position,
    )
    .await?;
    let filter = ServerFilter {
        state: query.state.map(|s| s.as_str().to_string()),
        catalog_id: query.catalog_id,
        q: query.q,
        owner: principal.owner_filter(),
    };
    let client = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(list_servers(&client, &filter, page).await?))
}

/// Query parameters of `GET /api/v1/servers/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ServerReadQuery {
    /// Wait (up to 5 s) until the servers read model has reached this global position
    /// (not needed with `at`, which reads the event log itself).
    pub min_position: Option<i64>,
    /// Time travel: the server as it was at this point of the event log, rebuilt from
    /// its events: a global position (`at=118`: every event at or before it) or an
    /// RFC 3339 time (`at=2026-01-31T12:00:00Z`: every event recorded at or before it;
    /// send a `+` offset as `%2B`).
    pub at: Option<String>,
}

/// Reads one server; secret values are masked as `"********"`. With `at`, reads it as it
/// was at that point of the event log (rebuilt from its events, whatever the read model
/// holds now), in the same shape.
#[utoipa::path(
    get,
    path = "/api/v1/servers/{id}",
    tag = "servers",
    params(("id" = Uuid, Path, description = "The server's id"), ServerReadQuery),
    responses(
        (status = 200, description = "The server (as it was at `at`, when given)", body = ServerView),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such server (with `at`: not created yet, or already deleted, at that point)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`min_position` below 0, or `at` neither a position nor an RFC 3339 time", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The read model did not reach `min_position` in time", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(server_id = %id))]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<ServerId>,
    ApiQuery(query): ApiQuery<ServerReadQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if let Some(at) = query.at.as_deref() {
        let at = AsOf::parse(at).map_err(|message| ApiError::invalid_field("at", message))?;
        return server_at(&state, &principal, id, at).await;
    }
    await_position(
        &state.pool,
        berth_projections::servers::NAME,
        query.min_position,
    )
    .await?;
    let client = state.pool.get().await?;
    match get_server(&client, id.uuid()).await? {
        Some(server) if principal.may_see(Some(&server.owner)) => {
            Ok(HttpResponse::Ok().json(server))
        }
        _ => Err(ApiError::NotFound("no server has this id".into())),
    }
}

/// Server `id` as it was at `at`, with the access rules of a plain read.
async fn server_at(
    state: &AppState,
    principal: &Principal,
    id: ServerId,
    at: AsOf,
) -> Result<HttpResponse, ApiError> {
    ensure_visible(&*state.owners, principal, id, "no server has this id").await?;
    let client = state.pool.get().await?;
    match server_as_of(&client, id.uuid(), at).await? {
        PastServer::Existing(server) => Ok(HttpResponse::Ok().json(server)),
        PastServer::Absent => Err(ApiError::NotFound(format!("no server had this id at {at}"))),
        PastServer::Deleted { position } => Err(ApiError::NotFound(format!(
            "the server had been deleted at {at} (by the event at position {position})"
        ))),
    }
}

/// Creates a server from a catalog entry, validated against the entry's config schema.
#[utoipa::path(
    post,
    path = "/api/v1/servers",
    tag = "servers",
    request_body = CreateServerBody,
    responses(
        (status = 201, description = "Created (stopped)", body = CommandAccepted,
            headers(("Berth-Position" = i64, description = "Global position of the last event written"))),
        (status = 400, description = "Malformed JSON, wrong type or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may see this but its role does not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown catalog entry, invalid name, missing or unknown config key, non-string value", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn create(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    JsonBody(body): JsonBody<CreateServerBody>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Operator, "creating a server")?;
    let new = body.into_new_server().map_err(ApiError::invalid)?;
    if !principal.is_admin() {
        // Another user's private entry is answered exactly like a missing one.
        let entry = state.bus.load_catalog_entry(new.catalog_id).await?;
        if !principal.may_see_catalog_entry(&entry) {
            return Err(ApiError::invalid_field(
                "catalog_id",
                "no catalog entry has this id",
            ));
        }
    }
    let (id, receipt) = state.bus.create_server(&metadata, new).await?;
    let position = committed_position(&state, receipt).await?;
    Ok(CommandAccepted {
        id: id.uuid(),
        position,
    }
    .respond(StatusCode::CREATED))
}

/// Sets or removes (`null`) some config keys and secrets.
#[utoipa::path(
    patch,
    path = "/api/v1/servers/{id}",
    tag = "servers",
    params(("id" = Uuid, Path, description = "The server's id")),
    request_body = PatchServerBody,
    responses(
        (status = 202, description = "Updated (or nothing to change)", body = CommandAccepted,
            headers(("Berth-Position" = i64, description = "Global position of the last event written"))),
        (status = 400, description = "Malformed JSON, wrong type or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may see this but its role does not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such server", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The server is being deleted", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown key, missing required key, non-string value", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(server_id = %id))]
pub async fn update_config(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    id: web::Path<ServerId>,
    JsonBody(body): JsonBody<PatchServerBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    ensure_operable_server(&*state.owners, &principal, id, "changing a server").await?;
    let patch = body.into_patch().map_err(ApiError::invalid)?;
    let receipt = state.bus.update_server_config(&metadata, id, patch).await?;
    let position = committed_position(&state, receipt).await?;
    Ok(CommandAccepted {
        id: id.uuid(),
        position,
    }
    .respond(StatusCode::ACCEPTED))
}
