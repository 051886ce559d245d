//! Identity: users, API keys, tokens, and who the caller is.
//!
//! Changes to users and keys answer only once the identity read model (which
//! authentication reads) has applied them: a key works, and a revoked key or disabled
//! user stops working, from the moment the answer arrives.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use berth_application::Receipt;
use berth_domain::user::Role;
use berth_domain::UserId;
use berth_infrastructure::administrators::administrator_ids;
use berth_infrastructure::credentials::{TokenClaims, TOKEN_ISSUER};
use berth_projections::identity::{get_api_key, get_user, list_api_keys, list_users};
use berth_projections::{ApiKeyView, Page, UserView};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::auth::{CommandContext, Credential, Principal};
use crate::http::consistency::await_position;
use crate::http::dto::command::CommandAccepted;
use crate::http::extract::{ApiQuery, JsonBody};
use crate::http::pagination::PageQuery;
use crate::http::problem::{ApiError, Problem};
use crate::http::routes::committed_position;
use crate::http::state::AppState;

/// Body of `POST /api/v1/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    /// Unique, 1–64 letters, digits, `.`, `_` or `-`; fixed for the user's life.
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
}

/// Body of `POST /api/v1/users/{id}/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    /// What the holder calls the key (1–64 letters, digits, `.`, `_` or `-`).
    pub name: String,
    /// When the key stops working (RFC 3339); never when absent.
    pub expires_at: Option<DateTime<Utc>>,
    /// Gateway profiles the key is limited to: it then works only at `/mcp/p/{profile}`
    /// for these profiles, and nowhere else. Absent or empty: it may do all its user may.
    #[serde(default)]
    pub profiles: std::collections::BTreeSet<String>,
}

/// A user just created.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserCreated {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Global position of its event.
    pub position: i64,
}

/// A key just created. `key` is shown this once only.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyCreated {
    /// The key's id.
    pub id: Uuid,
    /// The key: send it as `Authorization: Bearer <key>`. Not retrievable later.
    pub key: String,
    /// Its first characters, shown in listings.
    pub prefix: String,
    /// Its name.
    pub name: String,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// Global position of its event.
    pub position: i64,
}

/// A short-lived token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenIssued {
    /// A JWT, accepted as `Authorization: Bearer <token>` until `expires_at`.
    pub token: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// Who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The user's id.
    pub id: Uuid,
    /// The user's name.
    pub name: String,
    /// The user's role.
    pub role: String,
    /// `api_key`, `token` or `console_session`.
    pub credential: String,
    /// The API key presented (or that the token was issued for).
    pub key_id: Uuid,
    /// When the token expires (tokens only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Waits until authentication sees the change at `receipt`; answers its position.
pub async fn settled(state: &AppState, receipt: Receipt) -> Result<i64, ApiError> {
    let position = committed_position(state, receipt).await?;
    let reached = await_position(
        &state.pool,
        berth_projections::identity::NAME,
        Some(position),
    )
    .await;
    // Also when the wait gave up: the kept keys go now, and again from the feed once the
    // read model has the change.
    state.auth.identities_changed();
    reached?;
    Ok(position)
}

/// A 404 unless the caller is an administrator or user `id` itself.
fn ensure_self_or_admin(principal: &Principal, id: UserId) -> Result<(), ApiError> {
    if principal.is_admin() || principal.user_id == id.uuid() {
        Ok(())
    } else {
        Err(ApiError::NotFound("no user has this id".into()))
    }
}

/// Creates a user.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "identity",
    request_body = CreateUserBody,
    responses(
        (status = 201, description = "Created", body = UserCreated),
        (status = 400, description = "Malformed JSON or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only administrators manage users", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or role", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn create_user(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    JsonBody(body): JsonBody<CreateUserBody>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Admin, "creating a user")?;
    let role: Role = body
        .role
        .parse()
        .map_err(|e: String| ApiError::invalid_field("role", e))?;
    let (id, receipt) = state.bus.create_user(&body.name, role, &metadata).await?;
    let position = settled(&state, receipt).await?;
    Ok(HttpResponse::Created().json(UserCreated {
        id: id.uuid(),
        name: body.name,
        role: role.to_string(),
        position,
    }))
}

/// Lists the users, by name, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "identity",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of users, by name", body = Page<UserView>),
        (status = 422, description = "`page` or `page_size` out of range", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only administrators list users", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Admin, "listing users")?;
    let page = query.request()?;
    let client = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(list_users(&client, page).await?))
}

/// Disables a user: its keys stop working at once, its tokens when they expire.
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/disable",
    tag = "identity",
    params(("id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 202, description = "Disabled", body = CommandAccepted),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only administrators disable users", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already disabled, or the last active administrator", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn disable(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    id: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    ensure_self_or_admin(&principal, id)?;
    principal.require(Role::Admin, "disabling a user")?;
    let administrators = administrator_ids(&state.pool.get().await?).await?;
    let receipt = state
        .bus
        .disable_user(id, &administrators, &metadata)
        .await?;
    let position = settled(&state, receipt).await?;
    Ok(CommandAccepted {
        id: id.uuid(),
        position,
    }
    .respond(StatusCode::ACCEPTED))
}

/// Enables a disabled user again: its keys that were not revoked work again.
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/enable",
    tag = "identity",
    params(("id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 202, description = "Enabled", body = CommandAccepted),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only administrators enable users", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already enabled, or forgotten", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn enable(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    id: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    ensure_self_or_admin(&principal, id)?;
    principal.require(Role::Admin, "enabling a user")?;
    let receipt = state.bus.enable_user(id, &metadata).await?;
    let position = settled(&state, receipt).await?;
    Ok(CommandAccepted {
        id: id.uuid(),
        position,
    }
    .respond(StatusCode::ACCEPTED))
}

/// Creates an API key for a user (administrators for anyone, users for themselves).
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/keys",
    tag = "identity",
    params(("id" = Uuid, Path, description = "The user's id")),
    request_body = CreateKeyBody,
    responses(
        (status = 201, description = "Created; `key` is shown this once only", body = KeyCreated),
        (status = 400, description = "Malformed JSON or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user (or another user, for non-administrators)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The user is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name, or an expiry in the past", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn create_key(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    id: web::Path<UserId>,
    JsonBody(body): JsonBody<CreateKeyBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    ensure_self_or_admin(&principal, id)?;
    let hasher = state.auth.keys().as_ref();
    let issued = state
        .bus
        .create_api_key(
            id,
            &body.name,
            body.expires_at,
            body.profiles,
            hasher,
            &metadata,
        )
        .await?;
    let position = settled(&state, issued.receipt).await?;
    Ok(HttpResponse::Created().json(KeyCreated {
        id: issued.id,
        key: issued.key.expose_secret().to_string(),
        prefix: issued.prefix,
        name: body.name,
        expires_at: issued.expires_at,
        position,
    }))
}

/// Lists a user's API keys (never the keys themselves).
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/keys",
    tag = "identity",
    params(("id" = Uuid, Path, description = "The user's id"), PageQuery),
    responses(
        (status = 200, description = "A page of the user's keys, oldest first", body = Page<ApiKeyView>),
        (status = 422, description = "`page` or `page_size` out of range", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user (or another user, for non-administrators)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn list_keys(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<UserId>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    ensure_self_or_admin(&principal, id)?;
    let page = query.request()?;
    let client = state.pool.get().await?;
    if get_user(&client, id.uuid()).await?.is_none() {
        return Err(ApiError::NotFound("no user has this id".into()));
    }
    Ok(HttpResponse::Ok().json(list_api_keys(&client, id.uuid(), page).await?))
}

/// Revokes an API key (administrators any key, users their own).
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}",
    tag = "identity",
    params(("id" = Uuid, Path, description = "The key's id")),
    responses(
        (status = 202, description = "Revoked", body = CommandAccepted),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key (or another user's, for non-administrators)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already revoked", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(key_id = %id))]
pub async fn revoke_key(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let key = {
        let client = state.pool.get().await?;
        get_api_key(&client, id).await?
    };
    let key = key
        .filter(|k| principal.is_admin() || k.user_id == principal.user_id)
        .ok_or_else(|| ApiError::NotFound("no API key has this id".into()))?;
    let receipt = state
        .bus
        .revoke_api_key(key.user_id.into(), id, &metadata)
        .await?;
    let position = settled(&state, receipt).await?;
    Ok(CommandAccepted { id, position }.respond(StatusCode::ACCEPTED))
}

/// Exchanges an API key for a short-lived token (a JWT).
#[utoipa::path(
    post,
    path = "/api/v1/auth/token",
    tag = "identity",
    responses(
        (status = 200, description = "A token", body = TokenIssued),
        (status = 401, description = "No or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Presented a token: tokens are issued for API keys only", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key or user can no longer be used", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn issue_token(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
) -> Result<HttpResponse, ApiError> {
    let Credential::ApiKey { key_id } = principal.credential else {
        return Err(ApiError::Forbidden(
            "tokens are issued for API keys only; send the API key".into(),
        ));
    };
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(state.token_ttl)
        .map_err(|e| ApiError::internal(format!("token lifetime: {e}")))?;
    let expires_at = now + ttl;
    let token_id = Uuid::now_v7();
    // The aggregate, not the read model, decides: a key revoked a moment ago is refused.
    state
        .bus
        .record_token_issued(
            principal.user_id.into(),
            key_id,
            token_id,
            expires_at,
            &metadata,
        )
        .await?;
    let claims = TokenClaims {
        iss: TOKEN_ISSUER.into(),
        sub: principal.name.clone(),
        uid: principal.user_id,
        role: principal.role.to_string(),
        key: key_id,
        jti: token_id,
        iat: now.timestamp(),
        exp: expires_at.timestamp(),
    };
    let token = state.auth.keys().sign(&claims);
    Ok(HttpResponse::Ok().json(TokenIssued {
        token,
        expires_at: claims.expires_at(),
    }))
}

/// Who the caller is: user, role and credential.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "identity",
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn me(principal: Principal) -> HttpResponse {
    let (credential, expires_at) = match principal.credential {
        Credential::ApiKey { .. } => ("api_key", None),
        Credential::Token { expires_at, .. } => ("token", Some(expires_at)),
        Credential::Session { expires_at, .. } => ("console_session", Some(expires_at)),
    };
    HttpResponse::Ok().json(Me {
        id: principal.user_id,
        name: principal.name.clone(),
        role: principal.role.to_string(),
        credential: credential.into(),
        key_id: principal.credential.key_id(),
        expires_at,
    })
}
