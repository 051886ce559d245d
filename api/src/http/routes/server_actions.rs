//! Lifecycle commands: `POST /api/v1/servers/{id}/start|stop|restart|enable|disable`
//! `DELETE /api/v1/servers/{id}`, and `POST /api/v1/servers/{id}/upgrade`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use berth_application::servers::LifecycleAction;
use berth_domain::ServerId;
use uuid::Uuid;

use crate::http::auth::CommandContext;
use crate::http::dto::command::CommandAccepted;
use crate::http::dto::servers::UpgradeServerBody;
use crate::http::extract::OptionalJsonBody;
use crate::http::problem::{ApiError, Problem};
use crate::http::routes::committed_position;
use crate::http::state::AppState;
use berth_application::access::ensure_operable_server;

async fn run(
    state: web::Data<AppState>,
    context: CommandContext,
    id: Uuid,
    action: LifecycleAction,
) -> Result<HttpResponse, ApiError> {
    let CommandContext(metadata, principal) = context;
    ensure_operable_server(&*state.owners, &principal, id.into(), "operating a server").await?;
    let receipt = state
        .bus
        .server_lifecycle(&metadata, id.into(), action)
        .await?;
    let position = committed_position(&state, receipt).await?;
    Ok(CommandAccepted { id, position }.respond(StatusCode::ACCEPTED))
}

/// Generates one documented handler per lifecycle action; they differ only in the
/// action and its description.
macro_rules! lifecycle_handler {
    ($name:ident, $method:ident, $path:literal, $action:expr, $summary:literal, $conflict:literal) => {
        #[doc = $summary]
        #[utoipa::path(
            $method,
            path = $path,
            tag = "servers",
            description = $summary,
            params(("id" = Uuid, Path, description = "The server's id")),
            responses(
                (status = 202, description = "Accepted; the runtime acts on it next", body = CommandAccepted,
                    headers(("Berth-Position" = i64, description = "Global position of the last event written"))),
                (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
                (status = 403, description = "The caller may see this but its role does not allow it", body = Problem, content_type = "application/problem+json"),
                (status = 404, description = "No such server", body = Problem, content_type = "application/problem+json"),
                (status = 409, description = $conflict, body = Problem, content_type = "application/problem+json"),
            )
        )]
        #[tracing::instrument(skip_all, fields(server_id = %id))]
        pub async fn $name(
            state: web::Data<AppState>,
            context: CommandContext,
            id: web::Path<ServerId>,
        ) -> Result<HttpResponse, ApiError> {
            run(state, context, id.into_inner().uuid(), $action).await
        }
    };
}

lifecycle_handler!(
    start,
    post,
    "/api/v1/servers/{id}/start",
    LifecycleAction::Start,
    "Asks a stopped or failed server to start (it becomes `pending`).",
    "The server is not stopped or failed, is disabled, or is being deleted; the detail names its state"
);
lifecycle_handler!(
    stop,
    post,
    "/api/v1/servers/{id}/stop",
    LifecycleAction::Stop,
    "Asks a running (or starting) server to stop (it becomes `stopping`).",
    "The server is not running or about to run; the detail names its state"
);
lifecycle_handler!(
    restart,
    post,
    "/api/v1/servers/{id}/restart",
    LifecycleAction::Restart,
    "Stops a server and starts it again (a stopped one just starts).",
    "The server is stopping, disabled or being deleted; the detail names its state"
);
lifecycle_handler!(
    enable,
    post,
    "/api/v1/servers/{id}/enable",
    LifecycleAction::Enable,
    "Allows a disabled server to start again.",
    "The server is already enabled"
);
lifecycle_handler!(
    disable,
    post,
    "/api/v1/servers/{id}/disable",
    LifecycleAction::Disable,
    "Forbids a server to start; a running server is stopped.",
    "The server is already disabled"
);
lifecycle_handler!(
    delete,
    delete,
    "/api/v1/servers/{id}",
    LifecycleAction::Delete,
    "Deletes a server, stopping and removing its container first when it may run.",
    "The server is already being deleted"
);

/// Moves a server to another version of its catalog entry.
#[utoipa::path(
    post,
    path = "/api/v1/servers/{id}/upgrade",
    tag = "servers",
    description = "Moves a server to another version of its catalog entry (the newest unless \
        `catalog_version` names one). A server runs the version it was created from until its \
        owner or an administrator moves it; the new version applies from its next start.",
    params(("id" = Uuid, Path, description = "The server's id")),
    request_body(content = Option<UpgradeServerBody>, description = "Optional: with no body the server moves to the newest version"),
    responses(
        (status = 202, description = "Accepted; the server runs that version from its next start", body = CommandAccepted,
            headers(("Berth-Position" = i64, description = "Global position of the last event written"))),
        (status = 400, description = "Malformed JSON, wrong type or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may see this but its role does not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such server", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The server already runs that version, or is being deleted", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No such version, or the server's configuration does not satisfy its schema", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(server_id = %id))]
pub async fn upgrade(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    id: web::Path<ServerId>,
    OptionalJsonBody(body): OptionalJsonBody<UpgradeServerBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    ensure_operable_server(&*state.owners, &principal, id, "upgrading a server").await?;
    let receipt = state
        .bus
        .upgrade_server(&metadata, id, body.catalog_version)
        .await?;
    let position = committed_position(&state, receipt).await?;
    Ok(CommandAccepted {
        id: id.uuid(),
        position,
    }
    .respond(StatusCode::ACCEPTED))
}
