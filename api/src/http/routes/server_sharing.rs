//! `PUT /api/v1/servers/{id}/sharing`: an administrator lets other users use a server
//! through the MCP gateway.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use berth_application::gateway::sharing::share_server;
use berth_domain::ServerId;

use crate::http::auth::CommandContext;
use crate::http::dto::command::CommandAccepted;
use crate::http::dto::servers::SharingBody;
use crate::http::extract::JsonBody;
use crate::http::problem::{ApiError, Problem};
use crate::http::routes::committed_position;
use crate::http::state::AppState;

/// Replaces who besides its owner may use a server through the MCP gateway.
#[utoipa::path(
    put,
    path = "/api/v1/servers/{id}/sharing",
    tag = "gateway",
    description = "Replaces who besides its owner may use a server through the MCP gateway \
        (`/mcp`): every user, or the users named. They reach its tools, resources and prompts \
        there and nothing else: they do not see it in the REST API, its configuration or its \
        secrets. Administrators only. `{}` shares it with nobody; sending what is already set \
        changes nothing.",
    params(("id" = Uuid, Path, description = "The server's id")),
    request_body = SharingBody,
    responses(
        (status = 200, description = "Shared as asked", body = CommandAccepted,
            headers(("Berth-Position" = i64, description = "Global position of the last event written"))),
        (status = 400, description = "Malformed JSON, wrong type or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only administrators share servers", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such server", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The server is being deleted", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown user, or more than 1000 users", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(server_id = %id))]
pub async fn share(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    id: web::Path<ServerId>,
    JsonBody(body): JsonBody<SharingBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let receipt = share_server(
        &state.bus,
        &*state.owners,
        &principal,
        id,
        body.everyone,
        body.users,
        &metadata,
    )
    .await?;
    let position = committed_position(&state, receipt).await?;
    Ok(CommandAccepted {
        id: id.uuid(),
        position,
    }
    .respond(StatusCode::OK))
}
