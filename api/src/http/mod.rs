//! The HTTP edge: the actix application, its middleware (request ids, authentication,
//! rate limits, metrics), the routes, the wire shapes, the live event streams, and the one
//! mapping of errors to problem documents.

pub mod api_document;
pub mod app;
pub mod auth;
pub mod consistency;
pub mod dto;
pub mod extract;
pub mod identity_feed;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod openapi_rules;
pub mod pagination;
pub mod problem;
pub mod rate_limit;
pub mod request_id;
pub mod routes;
pub mod session;
pub mod state;
pub mod verified_keys;
