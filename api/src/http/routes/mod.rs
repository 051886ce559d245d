//! Every route the API serves, in one table: the app is built from it and the OpenAPI
//! test checks the document against it, so neither can forget a route.

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse, Resource, Route};
use berth_application::Receipt;
use berth_infrastructure::feed;

use crate::http::problem::ApiError;
use crate::http::state::AppState;

pub mod audit;
pub mod audit_export;
pub mod bulk;
pub mod catalog;
pub mod event_socket;
pub mod event_stream;
pub mod events;
pub mod health;
pub mod identity;
pub mod nodes;
pub mod profiles;
pub mod server_actions;
pub mod server_calls;
pub mod server_history;
pub mod server_runtime;
pub mod server_sharing;
pub mod servers;

/// Where the authenticated API lives.
pub const API_PREFIX: &str = "/api/v1";

/// One method on one path, and the handler answering it.
pub struct Endpoint {
    /// The HTTP method.
    pub method: Method,
    /// The path pattern (`{id}` for path parameters).
    pub path: &'static str,
    route: fn() -> Route,
}

fn endpoint(method: Method, path: &'static str, route: fn() -> Route) -> Endpoint {
    Endpoint {
        method,
        path,
        route,
    }
}

/// Routes outside the API prefix that need no token.
pub fn public_endpoints() -> Vec<Endpoint> {
    vec![
        endpoint(Method::GET, "/healthz", || web::route().to(health::healthz)),
        endpoint(Method::GET, "/readyz", || web::route().to(health::readyz)),
        endpoint(Method::GET, "/metrics", || web::route().to(health::metrics)),
    ]
}

/// Routes under [`API_PREFIX`] (paths here are relative to it); all need a bearer token.
pub fn api_endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        endpoint(M::GET, "/openapi.json", || {
            web::route().to(crate::http::openapi::document)
        }),
        endpoint(M::GET, "/catalog", || web::route().to(catalog::list)),
        endpoint(M::POST, "/catalog", || web::route().to(catalog::register)),
        endpoint(M::GET, "/catalog/{id}", || web::route().to(catalog::get)),
        endpoint(M::PUT, "/catalog/{id}", || web::route().to(catalog::update)),
        endpoint(M::DELETE, "/catalog/{id}", || {
            web::route().to(catalog::remove)
        }),
        endpoint(M::POST, "/catalog/{id}/publish", || {
            web::route().to(catalog::publish)
        }),
        endpoint(M::POST, "/catalog/{id}/unpublish", || {
            web::route().to(catalog::unpublish)
        }),
        endpoint(M::GET, "/servers", || web::route().to(servers::list)),
        endpoint(M::POST, "/servers", || web::route().to(servers::create)),
        endpoint(M::GET, "/servers/{id}", || web::route().to(servers::get)),
        endpoint(M::PATCH, "/servers/{id}", || {
            web::route().to(servers::update_config)
        }),
        endpoint(M::DELETE, "/servers/{id}", || {
            web::route().to(server_actions::delete)
        }),
        endpoint(M::POST, "/servers/{id}/start", || {
            web::route().to(server_actions::start)
        }),
        endpoint(M::POST, "/servers/{id}/stop", || {
            web::route().to(server_actions::stop)
        }),
        endpoint(M::POST, "/servers/{id}/restart", || {
            web::route().to(server_actions::restart)
        }),
        endpoint(M::POST, "/servers/{id}/enable", || {
            web::route().to(server_actions::enable)
        }),
        endpoint(M::POST, "/servers/{id}/disable", || {
            web::route().to(server_actions::disable)
        }),
        endpoint(M::POST, "/servers/{id}/upgrade", || {
            web::route().to(server_actions::upgrade)
        }),
        endpoint(M::GET, "/servers/{id}/events", || {
            web::route().to(events::server_events)
        }),
        endpoint(M::GET, "/profiles", || web::route().to(profiles::list)),
        endpoint(M::GET, "/profiles/{name}", || {
            web::route().to(profiles::get)
        }),
        endpoint(M::PUT, "/profiles/{name}", || {
            web::route().to(profiles::define)
        }),
        endpoint(M::DELETE, "/profiles/{name}", || {
            web::route().to(profiles::remove)
        }),
        endpoint(M::GET, "/servers/{id}/calls", || {
            web::route().to(server_calls::calls)
        }),
        endpoint(M::GET, "/servers/{id}/gateway", || {
            web::route().to(server_calls::gateway)
        }),
        endpoint(M::GET, "/calls/{id}", || {
            web::route().to(server_calls::call)
        }),
        endpoint(M::PUT, "/servers/{id}/sharing", || {
            web::route().to(server_sharing::share)
        }),
        endpoint(M::GET, "/servers/{id}/history", || {
            web::route().to(server_history::history)
        }),
        endpoint(M::POST, "/servers/{id}/test", || {
            web::route().to(server_runtime::test)
        }),
        endpoint(M::GET, "/servers/{id}/logs", || {
            web::route().to(server_runtime::logs)
        }),
        endpoint(M::GET, "/events", || web::route().to(events::list)),
        endpoint(M::GET, "/events/stream", || {
            web::route().to(event_stream::stream)
        }),
        endpoint(M::GET, "/events/ws", || {
            web::route().to(event_socket::socket)
        }),
        // After the literal `/events/…` paths: actix takes the first resource that matches.
        endpoint(M::GET, "/events/{position}", || {
            web::route().to(events::get)
        }),
        endpoint(M::POST, "/bulk", || web::route().to(bulk::begin)),
        endpoint(M::GET, "/bulk/{id}", || web::route().to(bulk::get)),
        endpoint(M::GET, "/audit", || web::route().to(audit::list)),
        endpoint(M::GET, "/audit/export", || {
            web::route().to(audit_export::export)
        }),
        endpoint(M::POST, "/users", || web::route().to(identity::create_user)),
        endpoint(M::GET, "/users", || web::route().to(identity::list)),
        endpoint(M::POST, "/users/{id}/disable", || {
            web::route().to(identity::disable)
        }),
        endpoint(M::POST, "/users/{id}/enable", || {
            web::route().to(identity::enable)
        }),
        endpoint(M::POST, "/users/{id}/keys", || {
            web::route().to(identity::create_key)
        }),
        endpoint(M::GET, "/users/{id}/keys", || {
            web::route().to(identity::list_keys)
        }),
        endpoint(M::DELETE, "/keys/{id}", || {
            web::route().to(identity::revoke_key)
        }),
        endpoint(M::POST, "/auth/token", || {
            web::route().to(identity::issue_token)
        }),
        endpoint(M::GET, "/me", || web::route().to(identity::me)),
        endpoint(M::GET, "/nodes", || web::route().to(nodes::list)),
    ]
}

/// Every route of the app as `(method, absolute path)`.
pub fn all_routes() -> Vec<(Method, String)> {
    public_endpoints()
        .into_iter()
        .map(|e| (e.method, e.path.to_string()))
        .chain(
            api_endpoints()
                .into_iter()
                .map(|e| (e.method, format!("{API_PREFIX}{}", e.path))),
        )
        .collect()
}

/// One actix resource per distinct path, with a route per method and a 405 problem
/// for any other method. (actix stops at the first resource whose path matches, so
/// methods of one path must share a resource.)
pub fn resources(endpoints: Vec<Endpoint>) -> Vec<Resource> {
    let mut paths: Vec<&'static str> = Vec::new();
    for e in &endpoints {
        if !paths.contains(&e.path) {
            paths.push(e.path);
        }
    }
    paths
        .into_iter()
        .map(|path| {
            let methods: Vec<&Endpoint> = endpoints.iter().filter(|e| e.path == path).collect();
            let allow = methods
                .iter()
                .map(|e| e.method.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            methods
                .iter()
                .fold(web::resource(path), |resource, e| {
                    resource.route((e.route)().method(e.method.clone()))
                })
                .default_service(web::to(move |req: HttpRequest| {
                    let allow = allow.clone();
                    async move { method_not_allowed(req, allow) }
                }))
        })
        .collect()
}

/// A 405 listing, in `Allow`, the methods the resource answers (RFC 9110).
fn method_not_allowed(req: HttpRequest, allow: String) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        allow,
    })
}

/// Answers paths no route matches.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route matches {} {}",
        req.method(),
        req.path()
    )))
}

/// The position a command's answer reports: that of its last event, or the head of
/// the store when it changed nothing (so `min_position` still reads a state at least as
/// new as the one the command saw).
pub async fn committed_position(state: &AppState, receipt: Receipt) -> Result<i64, ApiError> {
    match receipt.position {
        Some(position) => Ok(position),
        None => {
            let client = state.pool.get().await?;
            Ok(feed::head_position(&client).await?)
        }
    }
}
