//! `GET /api/v1/nodes`: the `berth serve` processes on this database, and which one is
//! the active worker ([Running several replicas](../../../../docs/replicas.md)).

use actix_web::{web, HttpResponse};
use berth_domain::user::Role;
use berth_infrastructure::nodes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::auth::Principal;
use crate::http::problem::{ApiError, Problem};
use crate::http::state::AppState;

/// One node.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    /// Its name (`berth serve --node`).
    pub name: String,
    /// `all`, `api` or `worker`.
    pub role: String,
    /// Where the other nodes reach it.
    pub url: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it last said it was alive (every 2 s).
    pub seen_at: DateTime<Utc>,
    /// Whether it was heard from within the last 10 s.
    pub alive: bool,
    /// Whether it is the active worker: it runs every server.
    pub active: bool,
}

/// Every node.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeList {
    /// The nodes, by name; a node that stopped cleanly is not listed.
    pub nodes: Vec<NodeView>,
}

/// The nodes on this database and which one runs the servers.
#[utoipa::path(
    get,
    path = "/api/v1/nodes",
    tag = "nodes",
    responses(
        (status = 200, description = "Every node, by name", body = NodeList),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only administrators list the nodes", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Admin, "listing the nodes")?;
    let active = nodes::active(&state.pool, None)
        .await?
        .map(|node| node.name);
    let listed = nodes::list(&state.pool)
        .await?
        .into_iter()
        .map(|node| NodeView {
            alive: node.alive(),
            active: active.as_deref() == Some(node.name.as_str()),
            name: node.name,
            role: node.role,
            url: node.url,
            started_at: node.started_at,
            seen_at: node.seen_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(NodeList { nodes: listed }))
}
