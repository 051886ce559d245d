//! `/api/v1/bulk`: begin a bulk operation over many servers, and follow its progress.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use berth_domain::bulk::BulkAction;
use berth_domain::BulkId;
use berth_projections::{get_bulk_operation, BulkOperationView};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::auth::{CommandContext, Principal};
use crate::http::consistency::await_position;
use crate::http::dto::command::CommandAccepted;
use crate::http::extract::{ApiQuery, JsonBody};
use crate::http::problem::{ApiError, Problem};
use crate::http::routes::catalog::ReadQuery;
use crate::http::routes::committed_position;
use crate::http::state::AppState;
use berth_application::access::ensure_visible;
use berth_domain::bulk::BulkError;
use berth_domain::server::Server;
use berth_domain::user::Role;
use berth_infrastructure::ownership::owned_among;
use cqrs_es::Aggregate;

/// The header that makes `POST /api/v1/bulk` safe to retry.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The lifecycle action a bulk operation applies to each server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkActionDto {
    /// Start each server.
    Start,
    /// Stop each server.
    Stop,
    /// Restart each server.
    Restart,
    /// Enable each server.
    Enable,
    /// Disable each server.
    Disable,
    /// Delete each server.
    Delete,
}

impl From<BulkActionDto> for BulkAction {
    fn from(a: BulkActionDto) -> Self {
        match a {
            BulkActionDto::Start => Self::Start,
            BulkActionDto::Stop => Self::Stop,
            BulkActionDto::Restart => Self::Restart,
            BulkActionDto::Enable => Self::Enable,
            BulkActionDto::Disable => Self::Disable,
            BulkActionDto::Delete => Self::Delete,
        }
    }
}

/// The body of `POST /api/v1/bulk`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequestBody {
    /// The action applied to every server.
    pub operation: BulkActionDto,
    /// The servers: 1 to 1000 distinct ids (repeats are ignored).
    pub server_ids: Vec<Uuid>,
}

/// The `Idempotency-Key` header, if sent: 1 to 255 visible ASCII characters, once.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let mut values = req.headers().get_all(IDEMPOTENCY_KEY);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::bad_field(IDEMPOTENCY_KEY, "must be sent once"));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !bytes.iter().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::bad_field(
            IDEMPOTENCY_KEY,
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters (no spaces)"),
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// Begins applying one lifecycle action to many servers. The answer comes once the
/// operation is recorded; the servers are acted on in the background, each target's
/// outcome showing in `GET /api/v1/bulk/{id}` as it is recorded.
///
/// With an `Idempotency-Key`, sending the same request again answers with the same
/// operation instead of beginning another one.
#[utoipa::path(
    post,
    path = "/api/v1/bulk",
    tag = "bulk",
    params(
        ("Idempotency-Key" = Option<String>, Header,
            description = "1 to 255 visible ASCII characters. The same key with the same body \
                           answers with the operation the first request began; with another body, 422."),
    ),
    request_body = BulkRequestBody,
    responses(
        (status = 202, description = "Recorded; its targets are acted on in the background", body = CommandAccepted,
            headers(("Berth-Position" = i64, description = "Global position of the last event written (the head when an idempotent request changed nothing)"))),
        (status = 400, description = "Malformed JSON, unknown field, unknown operation, malformed id, or a malformed `Idempotency-Key`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may see this but its role does not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No servers or more than 1000, a missing field, or an `Idempotency-Key` already used for a different request", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn begin(
    state: web::Data<AppState>,
    CommandContext(metadata, principal): CommandContext,
    req: HttpRequest,
    JsonBody(body): JsonBody<BulkRequestBody>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    principal.require(Role::Operator, "a bulk operation")?;
    if let Some(owner) = principal.owner_filter() {
        // Others' servers are answered exactly like servers that do not exist.
        let client = state.pool.get().await?;
        let owned = owned_among(&client, Server::TYPE, &body.server_ids, &owner).await?;
        if let Some(unknown) = body.server_ids.iter().find(|id| !owned.contains(id)) {
            return Err(BulkError::UnknownTarget {
                server_id: *unknown,
            }
            .into());
        }
    }
    let (id, receipt) = state
        .bus
        .begin_bulk(&metadata, body.operation.into(), body.server_ids, key)
        .await?;
    let position = committed_position(&state, receipt).await?;
    Ok(CommandAccepted { id, position }.respond(StatusCode::ACCEPTED))
}

/// Reads a bulk operation: its state, counts and every target's outcome so far.
#[utoipa::path(
    get,
    path = "/api/v1/bulk/{id}",
    tag = "bulk",
    params(("id" = Uuid, Path, description = "The bulk operation's id"), ReadQuery),
    responses(
        (status = 200, description = "The operation and its targets' outcomes", body = BulkOperationView),
        (status = 400, description = "Malformed id or parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such bulk operation", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`min_position` below 0", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The read model did not reach `min_position` in time", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(bulk_id = %id))]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<BulkId>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let not_found = "no bulk operation has this id";
    ensure_visible(&*state.owners, &principal, id, not_found).await?;
    await_position(
        &state.pool,
        berth_projections::bulk::NAME,
        query.min_position,
    )
    .await?;
    let client = state.pool.get().await?;
    match get_bulk_operation(&client, id.uuid()).await? {
        Some(view) => Ok(HttpResponse::Ok().json(view)),
        None => Err(ApiError::NotFound("no bulk operation has this id".into())),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn key(values: &[&[u8]]) -> Result<Option<String>, u16> {
        let mut req = TestRequest::default();
        for v in values {
            req = req.append_header((
                IDEMPOTENCY_KEY,
                actix_web::http::header::HeaderValue::from_bytes(v)
                    .unwrap_or_else(|e| panic!("{e}")),
            ));
        }
        idempotency_key(&req.to_http_request()).map_err(|e| e.problem().status)
    }

    #[test]
    fn idempotency_keys_are_short_visible_ascii_sent_once() {
        assert_eq!(key(&[]), Ok(None));
        assert_eq!(key(&[b"abc-123_X~"]), Ok(Some("abc-123_X~".into())));
        assert_eq!(key(&[&[b'k'; 255]]), Ok(Some("k".repeat(255))));
        assert_eq!(key(&[&[b'k'; 256]]), Err(400));
        assert_eq!(key(&[b""]), Err(400));
        assert_eq!(key(&[b"has space"]), Err(400));
        assert_eq!(key(&[b"caf\xc3\xa9"]), Err(400));
        assert_eq!(key(&[b"a", b"b"]), Err(400));
    }

    #[test]
    fn bodies_are_strict() {
        let ok: Result<BulkRequestBody, _> = crate::http::extract::parse_json(
            br#"{"operation":"restart","server_ids":["0193c0de-0000-7000-8000-000000000001"]}"#,
        );
        assert!(matches!(ok, Ok(b) if b.operation == BulkActionDto::Restart));
        let status = |body: &[u8]| {
            crate::http::extract::parse_json::<BulkRequestBody>(body)
                .map(|_| 0)
                .unwrap_or_else(|e| e.problem().status)
        };
        assert_eq!(status(br#"{"operation":"reboot","server_ids":[]}"#), 400);
        assert_eq!(
            status(br#"{"operation":"start","server_ids":[],"x":1}"#),
            400
        );
        assert_eq!(
            status(br#"{"operation":"start","server_ids":["nope"]}"#),
            400
        );
        assert_eq!(status(br#"{"server_ids":[]}"#), 422);
    }
}
