//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes and
//! the DTOs' schemas, served at `GET /api/v1/openapi.json`.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::problem::ApiError;
use crate::http::routes::{
    audit, audit_export, bulk, catalog, event_socket, event_stream, events, health, identity,
    nodes, profiles, server_actions, server_calls, server_history, server_runtime, server_sharing,
    servers,
};

/// The bearer security scheme every `/api/v1` operation requires.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token from `<data_dir>/admin-token`: `Authorization: Bearer <token>`",
                    ))
                    .build(),
            ),
        );
    }
}

/// Berth's HTTP API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Berth",
        description = "Control plane for MCP servers. Commands (POST/PUT/PATCH/DELETE) answer with the \
global position of the events they wrote (`Berth-Position`); queries accept `min_position` to \
read their own writes. Errors are RFC 9457 problem documents. Limits: bodies up to 1 MiB (`413`), \
JSON nested at most 32 levels (`400`), query values up to 256 characters (`400`), `config` and \
`secrets` up to 100 keys of up to 128 bytes (`422`). Every `/api/v1` route may answer `429 Too Many \
Requests` (a problem document with `Retry-After` in seconds) when the caller's credential is over \
its rate limit. Callers see what they own (viewer < operator < admin; administrators see \
everything): what a caller may not see answers `404`, what it may see but its role does not allow \
answers `403`."
    ),
    paths(
        health::healthz,
        health::readyz,
        health::metrics,
        document,
        catalog::list,
        catalog::get,
        catalog::register,
        catalog::update,
        catalog::remove,
        catalog::publish,
        catalog::unpublish,
        servers::list,
        servers::get,
        servers::create,
        servers::update_config,
        server_actions::start,
        server_actions::stop,
        server_actions::restart,
        server_actions::enable,
        server_actions::disable,
        server_actions::delete,
        server_actions::upgrade,
        server_runtime::test,
        server_runtime::logs,
        events::list,
        events::server_events,
        events::get,
        profiles::define,
        profiles::list,
        profiles::get,
        profiles::remove,
        server_calls::calls,
        server_calls::gateway,
        server_calls::call,
        server_sharing::share,
        server_history::history,
        event_stream::stream,
        event_socket::socket,
        audit::list,
        audit_export::export,
        bulk::begin,
        bulk::get,
        identity::create_user,
        identity::list,
        identity::disable,
        identity::enable,
        identity::create_key,
        identity::list_keys,
        identity::revoke_key,
        identity::issue_token,
        identity::me,
        nodes::list,
    ),
    components(schemas(
        crate::audit_file::ExportFormat,
        crate::http::dto::catalog::CatalogKindDto,
        crate::http::routes::servers::ServerStateDto,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "health", description = "Liveness, readiness and metrics (no token needed)"),
        (name = "catalog", description = "Kinds of MCP servers anyone may instantiate"),
        (name = "servers", description = "Configured MCP server instances and their lifecycle"),
        (name = "events", description = "The event log itself"),
        (name = "audit", description = "Who did what, when"),
        (name = "bulk", description = "One lifecycle action over many servers, with an outcome per server"),
        (name = "identity", description = "Users, API keys and tokens"),
        (name = "gateway", description = "The MCP gateway at /mcp: calls made through it, and its view of each server"),
        (name = "nodes", description = "The berth serve processes on this database, and which one runs the servers"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object),
        (status = 401, description = "No or bad token", body = crate::http::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn document() -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json()?.to_string()))
}

/// The whole document as JSON: what the handlers declare, completed with the rules
/// every route shares (see [`crate::http::openapi_rules`]).
pub fn document_json() -> Result<serde_json::Value, ApiError> {
    let mut document = serde_json::to_value(ApiDoc::openapi()).map_err(ApiError::internal)?;
    crate::http::openapi_rules::complete(&mut document);
    Ok(document)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::routes::all_routes;

    /// Every route the app serves is documented with its method, and the document
    /// describes no route the app does not serve.
    #[test]
    fn the_document_lists_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        let routes = all_routes();
        for (method, path) in &routes {
            let method = method.as_str().to_ascii_lowercase();
            assert!(
                paths.get(path).and_then(|p| p.get(&method)).is_some(),
                "{method} {path} is not in the OpenAPI document"
            );
        }
        let documented: usize = paths
            .values()
            .map(|ops| ops.as_object().map_or(0, |o| o.len()))
            .sum();
        assert_eq!(
            documented,
            routes.len(),
            "the document has operations the app does not serve"
        );
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
