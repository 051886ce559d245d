//! The gateway's HTTP routes: `/mcp` bridged to the SDK's Streamable HTTP service, and
//! the protected-resource metadata (RFC 9728) a client reads after a 401.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyStream, Full};
use serde_json::json;
use std::sync::Arc;

use super::caller::GatewayCaller;
use super::owners::Binding;
use super::{Gateway, MAX_REQUEST_BYTES};
use crate::http::auth::{Authenticator, Refusal};
use crate::http::problem::ApiError;
use crate::http::rate_limit::RateLimiter;
use crate::http::request_id::RequestId;

/// Where MCP clients connect.
pub const MCP_PATH: &str = "/mcp";

/// The header naming a session.
const SESSION_HEADER: &str = "mcp-session-id";

/// Where the resource's metadata is (RFC 9728).
pub const RESOURCE_METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// Adds the gateway's routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource(MCP_PATH)
                .app_data(web::PayloadConfig::new(MAX_REQUEST_BYTES))
                .route(web::route().to(mcp)),
        )
        .service(
            web::resource(format!("{MCP_PATH}/p/{{profile}}"))
                .app_data(web::PayloadConfig::new(MAX_REQUEST_BYTES))
                .route(web::route().to(mcp_profile)),
        )
        .service(web::resource(RESOURCE_METADATA_PATH).route(web::get().to(resource_metadata)))
        .service(
            web::resource(format!("{RESOURCE_METADATA_PATH}{MCP_PATH}"))
                .route(web::get().to(resource_metadata)),
        );
}

fn base_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

/// The RFC 9728 document: the resource is `/mcp`, presented as a Bearer header. Berth
/// issues its own keys and tokens, so no authorization server is named.
async fn resource_metadata(req: HttpRequest) -> HttpResponse {
    let base = base_url(&req);
    HttpResponse::Ok().json(json!({
        "resource": format!("{base}{MCP_PATH}"),
        "authorization_servers": [],
        "bearer_methods_supported": ["header"],
        "resource_name": "Berth MCP gateway",
        "resource_documentation": format!("{base}/docs"),
    }))
}

/// 401 with the challenge MCP clients follow to the resource metadata.
fn unauthorized(req: &HttpRequest, reason: &str) -> HttpResponse {
    let mut response = ApiError::Unauthorized(reason.to_owned()).error_response();
    let challenge = format!(
        "Bearer resource_metadata=\"{}{RESOURCE_METADATA_PATH}\"",
        base_url(req)
    );
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

async fn mcp(
    req: HttpRequest,
    body: Bytes,
    gateway: web::Data<Gateway>,
    auth: web::Data<Authenticator>,
) -> HttpResponse {
    serve(req, body, &gateway, &auth, None).await
}

/// `/mcp/p/{profile}`: the gateway limited to one of the caller's profiles.
async fn mcp_profile(
    req: HttpRequest,
    body: Bytes,
    gateway: web::Data<Gateway>,
    auth: web::Data<Authenticator>,
    profile: web::Path<String>,
) -> HttpResponse {
    serve(req, body, &gateway, &auth, Some(profile.into_inner())).await
}

async fn serve(
    req: HttpRequest,
    body: Bytes,
    gateway: &Gateway,
    auth: &Authenticator,
    profile: Option<String>,
) -> HttpResponse {
    let principal = match auth.authenticate(req.headers()).await {
        Ok((principal, digest)) => {
            // Every MCP request counts against its credential, as API requests do.
            if let Some(limiter) = req.app_data::<web::Data<RateLimiter>>() {
                if let Err(wait) = limiter.check(digest) {
                    let retry_after_secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                    return ApiError::TooManyRequests { retry_after_secs }.error_response();
                }
            }
            principal
        }
        Err(Refusal::Denied(reason)) => {
            tracing::info!(reason, "gateway request refused: not authenticated");
            return unauthorized(&req, reason);
        }
        Err(Refusal::Unavailable(error)) => return error.error_response(),
    };
    if !principal.profiles.is_empty()
        && !profile
            .as_ref()
            .is_some_and(|p| principal.profiles.contains(p))
    {
        return ApiError::Forbidden(format!(
            "this API key is limited to the profiles {}: use /mcp/p/{{profile}} with one of them",
            principal.profiles.join(", ")
        ))
        .error_response();
    }
    let profile = match profile {
        None => None,
        Some(name) => match gateway.profile(&principal, &name).await {
            Ok(Some(found)) => Some(Arc::new(found)),
            Ok(None) => {
                return ApiError::NotFound("you have no profile by this name".into())
                    .error_response()
            }
            Err(e) => return ApiError::from(e).error_response(),
        },
    };
    let mut metadata = berth_application::metadata::CommandMetadata::new(principal.actor.clone());
    if let Some(RequestId(id)) = req.extensions().get::<RequestId>() {
        metadata.request_id = *id;
    }
    let sent = body.clone();
    let mut request = match to_sdk_request(&req, body) {
        Ok(request) => request,
        Err(e) => {
            return ApiError::BadRequest {
                detail: format!("the request cannot be read: {e}"),
                errors: Vec::new(),
            }
            .error_response()
        }
    };
    let binding = Binding {
        user_id: principal.caller.user_id,
        key_id: principal.credential.key_id(),
        profile: profile.as_deref().map(|p| p.name.clone()),
    };
    let session = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(session) = &session {
        match gateway.owner_of(session).await {
            // Someone else's session is, to this caller, one that does not exist.
            Ok(Some(owner)) if owner != binding => {
                return ApiError::NotFound("no session has this id".into()).error_response();
            }
            // Theirs, or one no Berth knows (the SDK answers 404 for it).
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read who opened a gateway session");
                return ApiError::Unavailable("the database does not answer".into())
                    .error_response();
            }
        }
    }
    request.extensions_mut().insert(GatewayCaller {
        principal,
        metadata,
        profile,
    });
    let ending = req.method() == actix_web::http::Method::DELETE;
    let answered = gateway.service.handle(request).await;
    match (&session, answered.headers().get(SESSION_HEADER)) {
        (None, Some(opened)) => {
            if let Ok(opened) = opened.to_str() {
                gateway.opened(opened, binding).await;
            }
        }
        (Some(session), _) if ending && answered.status().is_success() => {
            gateway.owners.ended(session);
        }
        _ => {}
    }
    if answered.status() == http::StatusCode::UNSUPPORTED_MEDIA_TYPE && is_json(&req) {
        // The SDK's answer to a JSON body it could not read; the spec's is a JSON-RPC
        // error with no id.
        return unreadable(&sent);
    }
    let mut response = from_sdk_response(answered);
    if ending && response.status() == StatusCode::ACCEPTED {
        // The session is ended, nothing is pending: clients expect 200 or 204 here.
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// 400 with the JSON-RPC error for a body that is not JSON (-32700) or not a JSON-RPC
/// message (-32600).
fn unreadable(body: &[u8]) -> HttpResponse {
    let (code, message) = match serde_json::from_slice::<serde_json::Value>(body) {
        Err(e) => (-32700, format!("Parse error: {e}")),
        Ok(_) => (
            -32600,
            "Invalid Request: not a JSON-RPC 2.0 request, notification or response".to_owned(),
        ),
    };
    HttpResponse::BadRequest().json(json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": code, "message": message}
    }))
}

/// The actix request as the SDK's `http` types.
pub(crate) fn to_sdk_request(
    req: &HttpRequest,
    body: Bytes,
) -> Result<http::Request<Full<Bytes>>, http::Error> {
    let mut builder = http::Request::builder()
        .method(req.method().as_str())
        .uri(req.uri().to_string());
    for (name, value) in req.headers() {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    builder.body(Full::new(body))
}

/// The SDK's response as actix's, streamed as the SDK produces it (event streams stay
/// open for as long as the SDK keeps them).
pub(crate) fn from_sdk_response(
    response: http::Response<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>,
) -> HttpResponse {
    let (parts, body) = response.into_parts();
    let status =
        StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = HttpResponse::build(status);
    for (name, value) in &parts.headers {
        out.append_header((name.as_str(), value.as_bytes()));
    }
    let chunks = BodyStream::new(body).filter_map(|frame| async move {
        match frame {
            Ok(frame) => frame
                .into_data()
                .ok()
                .map(Ok::<_, std::convert::Infallible>),
            Err(never) => match never {},
        }
    });
    out.streaming(chunks)
}
