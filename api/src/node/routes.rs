//! The node routes, on the node's one listener: `{PREFIX}/servers/{id}/mcp` (the server's
//! MCP session, through [`super::proxy`]) and `{PREFIX}/servers/{id}/logs` (its output).
//! Only a node of the same installation gets in: each request carries the node token.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use berth_application::runtime::ContainerRuntime;
use berth_domain::catalog::Transport;
use berth_domain::ServerId;
use berth_infrastructure::credentials::CredentialKeys;
use berth_infrastructure::mcp::McpSessionPool;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::placement::NodePlacement;
use super::proxy::NodeProxy;
use super::PREFIX;
use crate::gateway::route::{from_sdk_response, to_sdk_request};
use crate::gateway::MAX_REQUEST_BYTES;
use crate::http::extract::ApiQuery;
use crate::http::problem::ApiError;
use crate::http::routes::server_runtime::{runtime_logs, LogsQuery};

/// What the node routes share.
pub struct NodeRoutes {
    service: StreamableHttpService<NodeProxy, LocalSessionManager>,
    keys: Arc<CredentialKeys>,
    runtime: Arc<dyn ContainerRuntime>,
    placement: Arc<NodePlacement>,
    stop: CancellationToken,
}

impl NodeRoutes {
    /// Routes passing requests to `sessions` and `runtime` while this node is the active
    /// worker (as `placement` says), for the nodes that present the node token of `keys`.
    pub fn new(
        sessions: Arc<McpSessionPool>,
        runtime: Arc<dyn ContainerRuntime>,
        keys: Arc<CredentialKeys>,
        placement: Arc<NodePlacement>,
    ) -> Self {
        let stop = CancellationToken::new();
        let config = StreamableHttpServerConfig::default()
            .with_cancellation_token(stop.child_token())
            // Nodes reach each other by whatever names their network gives them; the
            // node token is what keeps everyone else out.
            .disable_allowed_hosts()
            .enforce_origin_validation()
            .with_max_request_body_bytes(MAX_REQUEST_BYTES);
        let service = StreamableHttpService::new(
            move || Ok(NodeProxy::new(Arc::clone(&sessions))),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        Self {
            service,
            keys,
            runtime,
            placement,
            stop,
        }
    }

    /// Ends every session other nodes hold here (this node is stopping).
    pub fn close(&self) {
        self.stop.cancel();
    }

    /// Why the request may not pass: it lacks the node token, or this node does not run
    /// the servers (a node that stopped being the active worker must not answer for
    /// them; the asking node then finds the one that does).
    fn refusal(&self, req: &HttpRequest) -> Option<HttpResponse> {
        let admitted = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|token| self.keys.is_node_token(token));
        if !admitted {
            return Some(
                ApiError::Unauthorized("this route is for the nodes of this installation".into())
                    .error_response(),
            );
        }
        if !self.placement.is_active() {
            return Some(
                ApiError::Unavailable("this node is not the active worker".into()).error_response(),
            );
        }
        None
    }
}

/// Adds the node routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(web::resource(format!("{PREFIX}/servers/{{id}}/mcp")).route(web::route().to(mcp)))
        .service(web::resource(format!("{PREFIX}/servers/{{id}}/logs")).route(web::get().to(logs)));
}

async fn mcp(
    req: HttpRequest,
    payload: web::Payload,
    routes: web::Data<NodeRoutes>,
) -> HttpResponse {
    // Checked before the body is read: nothing of an outsider's is taken in.
    if let Some(refused) = routes.refusal(&req) {
        return refused;
    }
    let body = match payload.to_bytes_limited(MAX_REQUEST_BYTES).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            return ApiError::BadRequest {
                detail: format!("the request cannot be read: {e}"),
                errors: Vec::new(),
            }
            .error_response()
        }
        Err(_) => return HttpResponse::PayloadTooLarge().finish(),
    };
    let uri: http::Uri = match req.uri().to_string().parse() {
        Ok(uri) => uri,
        Err(_) => {
            return ApiError::NotFound("no server is named by this path".into()).error_response()
        }
    };
    if mcp_target(&uri).is_none() {
        return ApiError::NotFound("no server is named by this path".into()).error_response();
    }
    match to_sdk_request(&req, body) {
        Ok(request) => from_sdk_response(routes.service.handle(request).await),
        Err(e) => ApiError::BadRequest {
            detail: format!("the request cannot be read: {e}"),
            errors: Vec::new(),
        }
        .error_response(),
    }
}

/// The server and transport `{PREFIX}/servers/{id}/mcp?transport=stdio|http` names
/// (`stdio` when the query says nothing).
pub(super) fn mcp_target(uri: &http::Uri) -> Option<(Uuid, Transport)> {
    let rest = uri.path().strip_prefix(PREFIX)?.strip_prefix("/servers/")?;
    let (id, tail) = rest.split_once('/')?;
    if tail != "mcp" {
        return None;
    }
    let transport = match uri.query().unwrap_or_default() {
        "" | "transport=stdio" => Transport::Stdio,
        "transport=http" => Transport::Http,
        _ => return None,
    };
    Some((id.parse().ok()?, transport))
}

async fn logs(
    req: HttpRequest,
    routes: web::Data<NodeRoutes>,
    id: web::Path<ServerId>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> Result<HttpResponse, ApiError> {
    if let Some(refused) = routes.refusal(&req) {
        return Ok(refused);
    }
    let no_output = || ApiError::Conflict("this node runs no container or process for it".into());
    runtime_logs(&*routes.runtime, id.into_inner().uuid(), &query, no_output).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mcp_route_names_one_server_and_its_transport() {
        let id = Uuid::from_u128(7);
        let at = |path: &str| mcp_target(&path.parse().expect("a URI"));
        assert_eq!(
            at(&format!("{PREFIX}/servers/{id}/mcp")),
            Some((id, Transport::Stdio))
        );
        assert_eq!(
            at(&format!("{PREFIX}/servers/{id}/mcp?transport=http")),
            Some((id, Transport::Http))
        );
        assert_eq!(
            at(&format!("{PREFIX}/servers/{id}/mcp?transport=ftp")),
            None
        );
        assert_eq!(at(&format!("{PREFIX}/servers/{id}/logs")), None);
        assert_eq!(at(&format!("{PREFIX}/servers/not-an-id/mcp")), None);
        assert_eq!(at("/mcp"), None);
    }
}
