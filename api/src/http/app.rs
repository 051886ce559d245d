//! The actix application: routes from the endpoint table, the token check on
//! `/api/v1`, request ids, metrics, and problem documents for unknown routes.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{web, App};

use crate::console;
use crate::gateway;
use crate::http::auth::require_bearer;
use crate::http::extract::path_config;
use crate::http::metrics::track_requests;
use crate::http::rate_limit::limit_rate;
use crate::http::request_id::request_context;
use crate::http::routes::{self, API_PREFIX};
use crate::http::state::AppState;

/// Builds the application for one worker.
pub fn build(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let serves_api = state.role.serves_api();
    let node_routes = state.node_routes.clone();
    let api = routes::resources(routes::api_endpoints()).into_iter().fold(
        // The last `wrap` runs first: authenticate, then count against the credential.
        web::scope(API_PREFIX)
            .wrap(from_fn(limit_rate))
            .wrap(from_fn(require_bearer)),
        |scope, resource| scope.service(resource),
    );
    routes::resources(routes::public_endpoints())
        .into_iter()
        .fold(
            // The middleware each take their own part, so none depends on the whole state.
            App::new()
                .app_data(web::Data::from(state.auth.clone()))
                .app_data(web::Data::from(state.rate_limiter.clone()))
                .app_data(web::Data::from(state.metrics.clone()))
                .app_data(web::Data::from(state.gateway.clone()))
                .app_data(web::Data::new(state))
                .app_data(path_config()),
            |app, resource| app.service(resource),
        )
        .configure(|config| {
            if let Some(node_routes) = node_routes {
                config.app_data(web::Data::from(node_routes));
                crate::node::routes::configure(config);
            }
            // A worker node serves health, metrics and the node routes only.
            if serves_api {
                gateway::configure(config);
                config.service(api.default_service(web::to(routes::not_found)));
                // Last: its scope matches every path, and answers only its own.
                config.service(console::scope());
            }
        })
        .default_service(web::to(routes::not_found))
        // The last `wrap` runs first: the request id must exist before anything logs,
        // and metrics must see the final status, authentication failures included.
        .wrap(from_fn(track_requests))
        .wrap(from_fn(request_context))
}
