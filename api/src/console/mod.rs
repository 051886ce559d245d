//! The web console: server-rendered pages (maud) that htmx keeps live from the event
//! stream, on the same listener as the API. It signs in with an API key (exchanged for a
//! session cookie, [`crate::http::session`]), reads through the API's own handlers
//! ([`answer`]) and acts by sending htmx requests to the API itself, so a page shows and
//! does exactly what the API allows its user, with the API's errors shown in place.

use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpResponse};

use crate::http::extract::MAX_BODY_BYTES;

pub mod answer;
pub mod assets;
pub mod caller;
pub mod fragments;
pub mod layout;
pub mod live;
pub mod pages;
pub mod query;

use pages::{audit, catalog, events, gateway, server, servers, sign_in, users};

/// Only Berth's own scripts, styles and connections; no framing, no third-party requests.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'; object-src 'none'";

async fn home() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/servers"))
        .finish()
}

/// The console's routes, with the headers every console answer carries.
pub fn scope() -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::scope("")
        .wrap(
            DefaultHeaders::new()
                .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .add((header::REFERRER_POLICY, "same-origin"))
                .add((header::X_FRAME_OPTIONS, "DENY")),
        )
        .route("/", web::get().to(home))
        .route("/sign-in", web::get().to(sign_in::page))
        .route("/sign-in", web::post().to(sign_in::sign_in))
        .route("/sign-out", web::post().to(sign_in::sign_out))
        .route("/assets/{name}", web::get().to(assets::asset))
        .route("/servers", web::get().to(servers::list))
        .route("/servers/{id}", web::get().to(server::show))
        .route("/catalog", web::get().to(catalog::list))
        // Before `/catalog/{id}`: the first route that matches answers.
        .route("/catalog/new", web::get().to(catalog::new_entry))
        .route("/catalog/{id}", web::get().to(catalog::show))
        .route("/gateway", web::get().to(gateway::show))
        .route("/audit", web::get().to(audit::list))
        .route("/events", web::get().to(events::list))
        .route("/events/{position}", web::get().to(events::show))
        .route("/users", web::get().to(users::list))
        .route("/users/{id}", web::get().to(users::keys))
        .route("/console/live", web::get().to(live::live))
        .route(
            "/console/servers/rows",
            web::get().to(servers::rows_fragment),
        )
        .route("/console/servers/{id}/at", web::get().to(server::at))
        .route("/console/servers/{id}/test", web::post().to(server::test))
        .route("/console/bulk/{id}", web::get().to(servers::bulk_fragment))
        // A pasted OpenAPI document, form-encoded, takes up to about three times the API's
        // own body limit.
        .service(
            web::resource("/console/catalog")
                .app_data(web::PayloadConfig::new(3 * MAX_BODY_BYTES))
                .route(web::post().to(catalog::register)),
        )
}
