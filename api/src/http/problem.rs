//! The one mapping of every error the API can answer to an RFC 9457 problem document
//! (`application/problem+json`). Causes of 5xx answers are logged here, never sent.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use berth_application::ports::CipherError;
use berth_application::AppError;
use berth_domain::bulk::BulkError;
use berth_domain::catalog::CatalogError;
use berth_domain::profile::ProfileError;
use berth_domain::server::ServerError;
use berth_domain::user::UserError;
use berth_domain::FieldError;
use berth_infrastructure::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence, in words a person can act on.
    pub detail: String,
    /// The invalid fields, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProblemField {
    /// Path of the field, e.g. `config.API_TOKEN` or `runtime.image`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl From<FieldError> for ProblemField {
    fn from(e: FieldError) -> Self {
        Self {
            field: e.field,
            message: e.message,
        }
    }
}

/// Every way a request can fail, as the API answers it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: bad JSON, a wrong type, an unknown field or parameter.
    #[error("{detail}")]
    BadRequest {
        /// What is malformed.
        detail: String,
        /// The fields concerned, when known.
        errors: Vec<ProblemField>,
    },
    /// No bearer token, or not a valid one.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may see the resource but its role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource (or one the caller may not see).
    #[error("{0}")]
    NotFound(String),
    /// The path exists but not with this method.
    #[error("this resource does not answer {method}; it answers {allow}")]
    MethodNotAllowed {
        /// The method asked for.
        method: String,
        /// The methods it answers, as the `Allow` header lists them.
        allow: String,
    },
    /// The request conflicts with the resource's current state.
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than the API accepts.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body is not JSON.
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    /// The request is well-formed but breaks a rule.
    #[error("the request is invalid")]
    Invalid(Vec<ProblemField>),
    /// A read model has not caught up with the requested position in time.
    #[error("{0}")]
    NotYetConsistent(String),
    /// Berth is not ready to answer (database down, projections behind).
    #[error("{0}")]
    Unavailable(String),
    /// The caller sent more requests than its rate limit allows.
    #[error("too many requests: retry after {retry_after_secs} s")]
    TooManyRequests {
        /// Seconds until a request will be accepted again (rounded up).
        retry_after_secs: u64,
    },
    /// Anything else; the cause was logged where it happened.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// A 400 naming one field.
    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        Self::BadRequest {
            detail: format!("`{field}` {message}"),
            errors: vec![ProblemField { field, message }],
        }
    }

    /// A 422 naming one field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![ProblemField {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// A 422 from domain field errors.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        Self::Invalid(errors.into_iter().map(ProblemField::from).collect())
    }

    /// A 500 whose cause is logged now (inside the request's span) and never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(cause = %cause, "request failed with an internal error");
        Self::Internal
    }

    /// A 503 whose cause is logged now and summarised to the caller.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(cause = %cause, "request failed: the database is unavailable");
        Self::Unavailable("the database is unavailable; try again shortly".into())
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            Self::BadRequest { .. } => ("malformed-request", "Malformed request"),
            Self::Unauthorized(_) => ("unauthorized", "Unauthorized"),
            Self::Forbidden(_) => ("forbidden", "Forbidden"),
            Self::NotFound(_) => ("not-found", "Not found"),
            Self::MethodNotAllowed { .. } => ("method-not-allowed", "Method not allowed"),
            Self::Conflict(_) => ("conflict", "Conflict with the current state"),
            Self::PayloadTooLarge(_) => ("payload-too-large", "Request body too large"),
            Self::UnsupportedMediaType => ("unsupported-media-type", "Unsupported media type"),
            Self::Invalid(_) => ("validation", "Invalid request"),
            Self::NotYetConsistent(_) => ("not-yet-consistent", "Read model not caught up"),
            Self::Unavailable(_) => ("unavailable", "Service unavailable"),
            Self::TooManyRequests { .. } => ("too-many-requests", "Too many requests"),
            Self::Internal => ("internal", "Internal error"),
        }
    }

    /// The problem document this error answers with.
    pub fn problem(&self) -> Problem {
        let (slug, title) = self.slug_and_title();
        let detail = match self {
            Self::Invalid(errors) => invalid_detail(errors),
            Self::Internal => {
                "an internal error occurred; it was logged with this request's id".into()
            }
            other => other.to_string(),
        };
        let errors = match self {
            Self::BadRequest { errors, .. } | Self::Invalid(errors) => errors.clone(),
            _ => Vec::new(),
        };
        Problem {
            problem_type: format!("urn:berth:problem:{slug}"),
            title: title.into(),
            status: self.status_code().as_u16(),
            detail,
            errors,
        }
    }
}

fn invalid_detail(errors: &[ProblemField]) -> String {
    match errors {
        [one] => format!("`{}` {}", one.field, one.message),
        _ => format!("{} fields are invalid", errors.len()),
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotYetConsistent(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        match self {
            Self::Unauthorized(_) => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            Self::NotYetConsistent(_) | Self::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            Self::TooManyRequests { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from(*retry_after_secs)));
            }
            Self::MethodNotAllowed { allow, .. } => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    response.insert_header((header::ALLOW, value));
                }
            }
            _ => {}
        }
        // A problem document always serialises; the fallback only keeps this total.
        let body = serde_json::to_vec(&self.problem()).unwrap_or_else(|_| b"{}".to_vec());
        response.body(body)
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::Catalog(e) => e.into(),
            AppError::Server(e) => e.into(),
            AppError::Bulk(e) => e.into(),
            AppError::ToolCall(e) => Self::Conflict(e.to_string()),
            AppError::Profile(ProfileError::NotFound) => {
                Self::NotFound("you have no profile by this name".into())
            }
            AppError::Profile(ProfileError::Invalid(errors)) => Self::invalid(errors),
            AppError::User(e) => e.into(),
            AppError::Invalid(errors) => Self::invalid(errors),
            AppError::Hidden(what) => Self::NotFound(what),
            AppError::Forbidden(why) => Self::Forbidden(why),
            AppError::Conflict => Self::Conflict(AppError::Conflict.to_string()),
            AppError::StaleRead(e) => Self::Conflict(e.to_string()),
            AppError::Unavailable(cause) => Self::unavailable(cause),
            AppError::Cipher(e @ CipherError::Destroyed { .. }) => Self::Conflict(e.to_string()),
            AppError::Cipher(CipherError::Unavailable(cause)) => Self::unavailable(cause),
            AppError::Cipher(e) => Self::internal(format!("secret cipher: {e}")),
            AppError::Internal(cause) => Self::internal(cause),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(err: CatalogError) -> Self {
        match err {
            CatalogError::NotFound => Self::NotFound("no catalog entry has this id".into()),
            CatalogError::Invalid(errors) => Self::invalid(errors),
            e @ (CatalogError::AlreadyExists
            | CatalogError::PredefinedCannotBeRemoved
            | CatalogError::PredefinedAlwaysPublished
            | CatalogError::AlreadyInVisibility(_)
            | CatalogError::WrongKind { .. }) => Self::Conflict(e.to_string()),
        }
    }
}

impl From<ServerError> for ApiError {
    fn from(err: ServerError) -> Self {
        match err {
            ServerError::NotFound => Self::NotFound("no server has this id".into()),
            ServerError::Invalid(errors) => Self::invalid(errors),
            e @ (ServerError::AlreadyExists
            | ServerError::InvalidTransition { .. }
            | ServerError::Disabled { .. }
            | ServerError::AlreadyEnabled
            | ServerError::AlreadyDisabled
            | ServerError::BeingDeleted { .. }
            | ServerError::RestartNotAllowed
            | ServerError::AlreadyAtVersion(_)) => Self::Conflict(e.to_string()),
        }
    }
}

impl From<BulkError> for ApiError {
    fn from(err: BulkError) -> Self {
        match err {
            BulkError::NotFound => Self::NotFound("no bulk operation has this id".into()),
            BulkError::Invalid(errors) => Self::invalid(errors),
            e @ BulkError::UnknownTarget { .. } => Self::invalid_field("server_id", e.to_string()),
            e @ BulkError::BegunDifferently => Self::Conflict(e.to_string()),
        }
    }
}

impl From<UserError> for ApiError {
    fn from(err: UserError) -> Self {
        match err {
            UserError::NotFound => Self::NotFound("no user has this id".into()),
            UserError::KeyNotFound => Self::NotFound("no API key has this id".into()),
            UserError::Invalid(errors) => Self::invalid(errors),
            e @ (UserError::AlreadyExists
            | UserError::Disabled
            | UserError::AlreadyForgotten
            | UserError::Forgotten
            | UserError::AlreadyEnabled
            | UserError::LastAdministrator
            | UserError::KeyRevoked
            | UserError::KeyExpired
            | UserError::KeyExists) => Self::Conflict(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if err.is_unavailable() {
            Self::unavailable(err)
        } else {
            Self::internal(err)
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        Self::unavailable(err)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;
    use berth_domain::server::ServerState;

    use super::*;

    async fn body(err: ApiError) -> (StatusCode, serde_json::Value) {
        let response = err.error_response();
        let status = response.status();
        let bytes = to_bytes(response.into_body()).await.unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[actix_web::test]
    async fn domain_conflicts_name_the_state() {
        let err: ApiError = AppError::Server(ServerError::InvalidTransition {
            from: ServerState::Stopped,
            command: "stop",
        })
        .into();
        let (status, doc) = body(err).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(doc["detail"], "cannot stop a server that is stopped");
        assert_eq!(doc["status"], 409);
        assert_eq!(doc["type"], "urn:berth:problem:conflict");
    }

    #[actix_web::test]
    async fn validation_lists_every_field() {
        let err: ApiError = AppError::Invalid(vec![
            FieldError::new("config.A", "is required"),
            FieldError::new("name", "bad"),
        ])
        .into();
        let (status, doc) = body(err).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(doc["errors"][0]["field"], "config.A");
        assert_eq!(doc["errors"][1]["field"], "name");
    }

    #[actix_web::test]
    async fn internal_causes_are_not_sent() {
        let err: ApiError =
            AppError::Internal("password=hunter2 leaked in a driver error".into()).into();
        let response = err.error_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = to_bytes(response.into_body()).await.unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains("hunter2"));
    }

    #[test]
    fn unauthorized_and_unavailable_carry_their_headers() {
        let r = ApiError::Unauthorized("no token".into()).error_response();
        assert_eq!(
            r.headers()
                .get(header::WWW_AUTHENTICATE)
                .map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        assert_eq!(
            r.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(PROBLEM_JSON.as_bytes())
        );
        let r = ApiError::NotYetConsistent("later".into()).error_response();
        assert_eq!(
            r.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
    }
}
