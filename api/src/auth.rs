//! Bearer-token authentication of `/api/v1/*`, and the principal commands act for.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, ResponseError};
use berth_application::{Actor, CommandMetadata};
use futures_util::future::{ready, Ready};

use crate::admin_token::AdminToken;
use crate::problem::ApiError;
use crate::rate_limit::CredentialDigest;
use crate::request_id::RequestId;
use crate::state::AppState;

/// Who is calling, once their token was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The actor recorded on the commands they send.
    pub actor: Actor,
}

/// Middleware: lets a request through only with a valid `Authorization: Bearer` token,
/// recording the caller as a [`Principal`] in the request's extensions.
pub async fn require_bearer(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        let response =
            ApiError::internal("the app has no state to authenticate with").error_response();
        return Ok(req.into_response(response));
    };
    let verdict = authenticate(req.headers(), &state.admin);
    match verdict {
        Ok((principal, digest)) => {
            req.extensions_mut().insert(principal);
            req.extensions_mut().insert(digest);
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Err(reason) => {
            tracing::info!(reason, "request refused: not authenticated");
            let response = ApiError::Unauthorized(reason.into()).error_response();
            Ok(req.into_response(response))
        }
    }
}

/// Checks the `Authorization` header; the error says what is wrong without echoing it.
/// Also answers the digest of the credential, which the rate limiter keys on.
fn authenticate(
    headers: &HeaderMap,
    admin: &AdminToken,
) -> Result<(Principal, CredentialDigest), &'static str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or("send `Authorization: Bearer <token>`")?
        .to_str()
        .map_err(|_| "the Authorization header is not valid text")?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or("the Authorization header must be `Bearer <token>`")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("only Bearer tokens are accepted");
    }
    let token = token.trim();
    if admin.verify(token) {
        let principal = Principal {
            actor: Actor::admin(),
        };
        Ok((principal, CredentialDigest::of(token)))
    } else {
        Err("the bearer token is not valid")
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions().get::<Principal>().cloned().ok_or_else(|| {
                ApiError::Unauthorized("send `Authorization: Bearer <token>`".into())
            }),
        )
    }
}

/// The metadata of a command sent by this request: its principal and request id.
#[derive(Debug, Clone)]
pub struct CommandContext(pub CommandMetadata);

impl FromRequest for CommandContext {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let principal = match Principal::from_request(req, payload).into_inner() {
            Ok(p) => p,
            Err(e) => return ready(Err(e)),
        };
        let mut metadata = CommandMetadata::new(principal.actor);
        if let Some(RequestId(id)) = req.extensions().get::<RequestId>() {
            metadata.request_id = *id;
        }
        ready(Ok(Self(metadata)))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;
    use secrecy::SecretString;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }

    #[test]
    fn only_the_admin_bearer_token_is_accepted() {
        let admin = AdminToken::new(&SecretString::from("berth_abc".to_string()));
        assert!(authenticate(&headers("Bearer berth_abc"), &admin).is_ok());
        assert!(authenticate(&headers("bearer  berth_abc"), &admin).is_ok());
        assert!(authenticate(&headers("Bearer berth_abd"), &admin).is_err());
        assert!(authenticate(&headers("Basic berth_abc"), &admin).is_err());
        assert!(authenticate(&headers("berth_abc"), &admin).is_err());
        assert!(authenticate(&HeaderMap::new(), &admin).is_err());
    }
}
