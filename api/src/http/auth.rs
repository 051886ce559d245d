//! Bearer authentication of `/api/v1/*`: an API key (looked up by prefix, compared by
//! keyed hash, and kept a while once verified: [`super::verified_keys`]) or a
//! short-lived token (a JWT verified statelessly), and the principal that commands then
//! act for.

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, ResponseError};
use berth_application::access::Caller;
use berth_application::identity::key_prefix;
use berth_application::ports::ApiKeyHasher;
use berth_application::{Actor, CommandMetadata};
use berth_infrastructure::credentials::{CredentialKeys, TokenError};
use berth_projections::identity::{find_console_session, find_keys_by_prefix, KeyCandidate};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures_util::future::{ready, Ready};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::http::problem::ApiError;
use crate::http::request_id::RequestId;
use crate::http::session::{self, constant_time_eq, Session};
use crate::http::verified_keys::{Lookup, VerifiedKeys};

/// How the caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API key.
    ApiKey {
        /// The key's id.
        key_id: Uuid,
    },
    /// A token issued for an API key.
    Token {
        /// The key the token was issued for.
        key_id: Uuid,
        /// When the token expires.
        expires_at: DateTime<Utc>,
    },
    /// A console session cookie, opened with an API key.
    Session {
        /// The key the session was opened with.
        key_id: Uuid,
        /// The session's id.
        session_id: Uuid,
        /// When the session ends.
        expires_at: DateTime<Utc>,
    },
}

impl Credential {
    /// The API key behind the credential: rate limits are per key, however many tokens
    /// it was exchanged for.
    pub fn key_id(&self) -> Uuid {
        match self {
            Self::ApiKey { key_id } | Self::Token { key_id, .. } | Self::Session { key_id, .. } => {
                *key_id
            }
        }
    }

    /// When the credential stops working on its own (`None` for a key: its expiry, if
    /// any, is checked against the read model).
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::ApiKey { .. } => None,
            Self::Token { expires_at, .. } | Self::Session { expires_at, .. } => Some(*expires_at),
        }
    }
}

/// Who is calling, once their credential was verified: the caller the access rules
/// judge ([`Caller`], which it dereferences to), and the credential it proved itself with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user, as the rules see it.
    pub caller: Caller,
    /// How they authenticated.
    pub credential: Credential,
    /// The gateway profiles the credential is limited to: it then works only at
    /// `/mcp/p/{profile}` for one of them. Empty: it may do all its user may.
    pub profiles: Vec<String>,
}

impl std::ops::Deref for Principal {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

/// Verifies credentials: keys against the identity read model, tokens by signature.
pub struct Authenticator {
    pool: Pool,
    keys: Arc<CredentialKeys>,
    verified: VerifiedKeys,
}

impl Authenticator {
    /// An authenticator reading keys through `pool` and tokens with `keys`.
    pub fn new(pool: Pool, keys: Arc<CredentialKeys>) -> Self {
        Self {
            pool,
            keys,
            verified: VerifiedKeys::new(),
        }
    }

    /// Forgets every key verified so far: the identity read model changed (a key
    /// revoked, a user disabled, forgotten or given another role).
    pub fn identities_changed(&self) {
        self.verified.clear();
    }

    /// The installation's credential keys (to sign tokens and hash new keys).
    pub fn keys(&self) -> &Arc<CredentialKeys> {
        &self.keys
    }

    /// The principal `headers` prove, and the rate-limit key of its credential.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<(Principal, CredentialDigest), Refusal> {
        let presented = bearer(headers)?;
        let principal = if presented.contains('.') {
            self.token(presented)?
        } else {
            self.api_key(presented).await?
        };
        let digest = principal_digest(&principal);
        Ok((principal, digest))
    }

    fn token(&self, token: &str) -> Result<Principal, Refusal> {
        let claims = self.keys.verify(token).map_err(|e| match e {
            TokenError::Expired => Refusal::Denied("the token has expired; get a new one"),
            TokenError::Invalid => Refusal::Denied("the bearer token is not valid"),
        })?;
        let role = claims
            .role
            .parse()
            .map_err(|_| Refusal::Denied("the bearer token is not valid"))?;
        Ok(Principal {
            caller: Caller {
                actor: Actor::User(claims.sub.clone()),
                user_id: claims.uid,
                name: claims.sub.clone(),
                role,
            },
            credential: Credential::Token {
                key_id: claims.key,
                expires_at: claims.expires_at(),
            },
            profiles: Vec::new(),
        })
    }

    /// The principal API key `key` proves (what signing in to the console checks).
    pub async fn api_key(&self, key: &str) -> Result<Principal, Refusal> {
        let prefix = key_prefix(key).ok_or(NOT_VALID)?;
        let hash = self.keys.hash(key);
        let generation = match self.verified.lookup(&hash, Utc::now()) {
            Lookup::Valid(principal) => return Ok(principal),
            Lookup::Expired => return Err(Refusal::Denied("the API key has expired")),
            Lookup::Unknown(generation) => generation,
        };
        let client = self.pool.get().await.map_err(Refusal::unavailable)?;
        let candidates = find_keys_by_prefix(&client, prefix)
            .await
            .map_err(Refusal::unavailable)?;
        let found = candidates
            .into_iter()
            .find(|c| constant_time_eq(c.hash.as_bytes(), hash.as_bytes()))
            .ok_or(NOT_VALID)?;
        let expires_at = found.expires_at;
        let key_id = found.key_id;
        let principal = usable_key(found, Credential::ApiKey { key_id })?;
        self.verified
            .keep(hash, principal.clone(), expires_at, generation);
        Ok(principal)
    }

    /// The principal a console session cookie proves: the session must be sealed by
    /// this installation, unexpired, recorded and not signed out, and its key still usable
    /// (one query, so a sign-out or revocation anywhere ends the session at its next
    /// request).
    pub async fn session(&self, session: &Session) -> Result<Principal, Refusal> {
        const ENDED: Refusal = Refusal::Denied("the console session has ended; sign in again");
        let client = self.pool.get().await.map_err(Refusal::unavailable)?;
        let found = find_console_session(&client, session.id)
            .await
            .map_err(Refusal::unavailable)?
            .ok_or(ENDED)?;
        if found.ended || found.key.key_id != session.key_id {
            return Err(ENDED);
        }
        usable_key(
            found.key,
            Credential::Session {
                key_id: session.key_id,
                session_id: session.id,
                expires_at: session.expires_at,
            },
        )
    }

    /// The session in a request's cookie, if one is there and this installation sealed it.
    pub fn open_session(&self, cookie: &str) -> Option<Session> {
        Session::open(cookie, &self.keys, Utc::now())
    }
}

const NOT_VALID: Refusal = Refusal::Denied("the bearer token is not valid");

/// The principal of a stored key, unless the key or its user may no longer be used.
fn usable_key(found: KeyCandidate, credential: Credential) -> Result<Principal, Refusal> {
    if found.revoked {
        return Err(Refusal::Denied("the API key was revoked"));
    }
    if found.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(Refusal::Denied("the API key has expired"));
    }
    if found.user_disabled {
        return Err(Refusal::Denied("the API key's user is disabled"));
    }
    let role = found.role.parse().map_err(|_| NOT_VALID)?;
    Ok(Principal {
        caller: Caller {
            actor: Actor::User(found.user_name.clone()),
            user_id: found.user_id,
            name: found.user_name,
            role,
        },
        credential,
        profiles: found.profiles,
    })
}

/// Why a request was not authenticated.
#[derive(Debug)]
pub enum Refusal {
    /// The credential is missing, malformed, unknown, expired, revoked or disabled.
    Denied(&'static str),
    /// Keys could not be looked up.
    Unavailable(ApiError),
}

impl Refusal {
    fn unavailable(cause: impl std::fmt::Display) -> Self {
        Self::Unavailable(ApiError::unavailable(cause))
    }
}

/// The bearer credential in `headers`; the error says what is wrong without echoing it.
fn bearer(headers: &HeaderMap) -> Result<&str, Refusal> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(Refusal::Denied("send `Authorization: Bearer <token>`"))?
        .to_str()
        .map_err(|_| Refusal::Denied("the Authorization header is not valid text"))?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(Refusal::Denied(
        "the Authorization header must be `Bearer <token>`",
    ))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refusal::Denied("only Bearer tokens are accepted"));
    }
    Ok(token.trim())
}

/// The SHA-256 of the credential a request authenticated with, set by the
/// authentication middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CredentialDigest(pub [u8; 32]);

impl CredentialDigest {
    /// The digest of `credential`.
    pub fn of(credential: &str) -> Self {
        Self(Sha256::digest(credential.as_bytes()).into())
    }
}

/// Middleware: lets a request through only with a valid bearer credential, or, without
/// an `Authorization` header, a console session cookie (with its CSRF token when the
/// request changes something), recording the caller as a [`Principal`] in the
/// request's extensions.
pub async fn require_bearer(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(auth) = req.app_data::<web::Data<Authenticator>>().cloned() else {
        let response = ApiError::internal("the app has no authenticator").error_response();
        return Ok(req.into_response(response));
    };
    let cookie = req.cookie(session::COOKIE);
    let authenticated = match cookie {
        Some(cookie) if !req.headers().contains_key(header::AUTHORIZATION) => {
            match console_session(&auth, req.request(), cookie.value()).await {
                Ok((principal, _)) => {
                    let digest = principal_digest(&principal);
                    Ok((principal, digest))
                }
                Err(SessionRefusal::Credential(refusal)) => Err(refusal),
                Err(SessionRefusal::Forbidden(reason)) => {
                    tracing::info!(reason, "console request refused");
                    let response = ApiError::Forbidden(reason.into()).error_response();
                    return Ok(req.into_response(response));
                }
            }
        }
        _ => auth.authenticate(req.headers()).await,
    };
    match authenticated {
        Ok((principal, _)) if !principal.profiles.is_empty() => {
            let response = ApiError::Forbidden(format!(
                "this API key is limited to the MCP gateway profiles {}: it works only at /mcp/p/{{profile}}",
                principal.profiles.join(", ")
            ))
            .error_response();
            Ok(req.into_response(response))
        }
        Ok((principal, digest)) => {
            req.extensions_mut().insert(principal);
            req.extensions_mut().insert(digest);
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Err(Refusal::Denied(reason)) => {
            tracing::info!(reason, "request refused: not authenticated");
            let response = ApiError::Unauthorized(reason.into()).error_response();
            Ok(req.into_response(response))
        }
        Err(Refusal::Unavailable(error)) => Ok(req.into_response(error.error_response())),
    }
}

fn principal_digest(principal: &Principal) -> CredentialDigest {
    CredentialDigest::of(&principal.credential.key_id().to_string())
}

/// Why a request with a session cookie was refused.
pub enum SessionRefusal {
    /// The session or its key is not valid (401).
    Credential(Refusal),
    /// It came from a page of another origin, or changes something without the
    /// session's CSRF token (403, saying which).
    Forbidden(&'static str),
}

/// The principal and session of request `req` with session cookie `cookie`: the request
/// must come from Berth's own pages ([`session::foreign`]), and carry the CSRF token
/// (the `X-CSRF-Token` header) when it changes something.
pub async fn console_session(
    auth: &Authenticator,
    req: &HttpRequest,
    cookie: &str,
) -> Result<(Principal, Session), SessionRefusal> {
    let session = auth
        .open_session(cookie)
        .ok_or(SessionRefusal::Credential(Refusal::Denied(
            "the console session has ended; sign in again",
        )))?;
    if session::foreign(req.headers(), req.connection_info().host()) {
        return Err(SessionRefusal::Forbidden(session::FOREIGN_REFUSED));
    }
    if session::is_unsafe(req.method()) {
        let presented = req
            .headers()
            .get(session::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !session.csrf_matches(auth.keys(), presented) {
            return Err(SessionRefusal::Forbidden(session::CSRF_REFUSED));
        }
    }
    let principal = auth
        .session(&session)
        .await
        .map_err(SessionRefusal::Credential)?;
    Ok((principal, session))
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

/// The metadata of a command sent by this request, and who sent it.
#[derive(Debug, Clone)]
pub struct CommandContext(pub CommandMetadata, pub Principal);

impl CommandContext {
    /// The context of a command `principal` sends with request `req` (its request id).
    pub fn of(req: &HttpRequest, principal: &Principal) -> Self {
        let mut metadata = CommandMetadata::new(principal.actor.clone());
        if let Some(RequestId(id)) = req.extensions().get::<RequestId>() {
            metadata.request_id = *id;
        }
        Self(metadata, principal.clone())
    }
}

impl FromRequest for CommandContext {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        ready(
            Principal::from_request(req, payload)
                .into_inner()
                .map(|principal| Self::of(req, &principal)),
        )
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;
    use berth_application::AppError;
    use berth_domain::user::Role;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }

    #[test]
    fn only_bearer_credentials_are_read() {
        assert_eq!(bearer(&headers("Bearer berth_abc")).ok(), Some("berth_abc"));
        assert_eq!(
            bearer(&headers("bearer  berth_abc")).ok(),
            Some("berth_abc")
        );
        assert!(bearer(&headers("Basic berth_abc")).is_err());
        assert!(bearer(&headers("berth_abc")).is_err());
        assert!(bearer(&HeaderMap::new()).is_err());
    }

    fn principal(role: Role) -> Principal {
        Principal {
            caller: Caller {
                actor: Actor::User("ann".into()),
                user_id: Uuid::nil(),
                name: "ann".into(),
                role,
            },
            credential: Credential::ApiKey {
                key_id: Uuid::nil(),
            },
            profiles: Vec::new(),
        }
    }

    #[test]
    fn roles_gate_actions_and_owners_gate_sight() {
        let viewer = principal(Role::Viewer);
        assert!(viewer.require(Role::Viewer, "reading").is_ok());
        assert!(matches!(
            viewer.require(Role::Operator, "starting a server"),
            Err(AppError::Forbidden(_))
        ));
        assert!(viewer.may_see(Some("user:ann")));
        assert!(!viewer.may_see(Some("user:bob")));
        assert!(!viewer.may_see(None));
        assert_eq!(viewer.owner_filter().as_deref(), Some("user:ann"));
        let admin = principal(Role::Admin);
        assert!(admin.may_see(None) && admin.may_see(Some("user:bob")));
        assert_eq!(admin.owner_filter(), None);
    }
}
