//! `/api/v1/profiles`: the caller's gateway profiles, each a selection of their servers
//! and tools served at `/mcp/p/{name}`.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use berth_application::gateway::profiles::{
    define_profile, find_profile, list_profiles, remove_profile,
};
use berth_domain::profile::{Profile, ProfileId, ProfileServer};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::auth::{CommandContext, Principal};
use crate::http::dto::command::CommandAccepted;
use crate::http::extract::JsonBody;
use crate::http::problem::{ApiError, Problem};
use crate::http::routes::committed_position;
use crate::http::state::AppState;

/// One server of a profile, and which of its tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileServerDto {
    /// One of your servers.
    pub server_id: Uuid,
    /// Only these tools (the server's own names); all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<BTreeSet<String>>,
    /// Never these tools, even when allowed.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub deny: BTreeSet<String>,
}

impl From<ProfileServerDto> for ProfileServer {
    fn from(s: ProfileServerDto) -> Self {
        Self {
            server_id: s.server_id,
            allow: s.allow,
            deny: s.deny,
        }
    }
}

impl From<&ProfileServer> for ProfileServerDto {
    fn from(s: &ProfileServer) -> Self {
        Self {
            server_id: s.server_id,
            allow: s.allow.clone(),
            deny: s.deny.clone(),
        }
    }
}

/// The body of `PUT /api/v1/profiles/{name}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    /// The servers it selects (at most 100).
    pub servers: Vec<ProfileServerDto>,
}

/// A profile.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProfileView {
    /// Its id (derived from its owner and name).
    pub id: Uuid,
    /// Its name: the gateway serves it at `/mcp/p/{name}`.
    pub name: String,
    /// Its owner.
    pub owner: String,
    /// What it selects.
    pub servers: Vec<ProfileServerDto>,
}

impl From<&Profile> for ProfileView {
    fn from(p: &Profile) -> Self {
        Self {
            id: ProfileId::of(&p.owner, &p.name).uuid(),
            name: p.name.clone(),
            owner: p.owner.clone(),
            servers: p.servers.iter().map(Into::into).collect(),
        }
    }
}

/// Your profiles.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProfileList {
    /// Every profile of yours, by name.
    pub items: Vec<ProfileView>,
}

/// Defines your profile `name`, or replaces what it selects.
#[utoipa::path(
    put,
    path = "/api/v1/profiles/{name}",
    tag = "gateway",
    params(("name" = String, Path, description = "The profile's name")),
    request_body = ProfileBody,
    responses(
        (status = 200, description = "Defined", body = CommandAccepted,
            headers(("Berth-Position" = i64, description = "Global position of the last event written"))),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Viewers cannot define profiles", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad name or tool name, a server you may not use", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn define(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    name: web::Path<String>,
    JsonBody(body): JsonBody<ProfileBody>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let servers = body.servers.into_iter().map(Into::into).collect();
    let receipt = define_profile(&state.bus, &principal, &name, servers, &metadata).await?;
    let position = committed_position(&state, receipt).await?;
    let id = ProfileId::of(&principal.owner(), &name).uuid();
    Ok(CommandAccepted { id, position }.respond(StatusCode::OK))
}

/// Lists your profiles.
#[utoipa::path(
    get,
    path = "/api/v1/profiles",
    tag = "gateway",
    responses(
        (status = 200, description = "Your profiles, by name", body = ProfileList),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let profiles = list_profiles(&state.bus, &*state.owners, &principal).await?;
    Ok(HttpResponse::Ok().json(ProfileList {
        items: profiles.iter().map(Into::into).collect(),
    }))
}

/// Your profile `name`.
#[utoipa::path(
    get,
    path = "/api/v1/profiles/{name}",
    tag = "gateway",
    params(("name" = String, Path, description = "The profile's name")),
    responses(
        (status = 200, description = "The profile", body = ProfileView),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "You have no profile by this name", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    match find_profile(&state.bus, &principal, &name).await? {
        Some(profile) => Ok(HttpResponse::Ok().json(ProfileView::from(&profile))),
        None => Err(ApiError::NotFound(
            "you have no profile by this name".into(),
        )),
    }
}

/// Removes your profile `name`.
#[utoipa::path(
    delete,
    path = "/api/v1/profiles/{name}",
    tag = "gateway",
    params(("name" = String, Path, description = "The profile's name")),
    responses(
        (status = 202, description = "Removed", body = CommandAccepted,
            headers(("Berth-Position" = i64, description = "Global position of the last event written"))),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Viewers cannot remove profiles", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "You have no profile by this name", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn remove(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let receipt = remove_profile(&state.bus, &principal, &name, &metadata).await?;
    let position = committed_position(&state, receipt).await?;
    let id = ProfileId::of(&principal.owner(), &name).uuid();
    Ok(CommandAccepted { id, position }.respond(StatusCode::ACCEPTED))
}
