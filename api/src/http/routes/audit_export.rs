//! `GET /api/v1/audit/export`: the audit trail as a streamed JSON Lines or CSV file,
//! read batch after batch so memory stays constant however long the trail is.

use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use berth_projections::{AuditEntry, AuditFilter};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::audit_file::{AuditFile, ExportFormat};
use crate::http::auth::Principal;
use crate::http::consistency::await_position;
use crate::http::extract::ApiQuery;
use crate::http::problem::{ApiError, Problem};
use crate::http::routes::audit::check_range;
use crate::http::state::AppState;

/// Query parameters of `GET /api/v1/audit/export`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `jsonl` (default) or `csv`.
    pub format: Option<ExportFormat>,
    /// At or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Strictly before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Who acted, e.g. `user:admin`.
    pub actor: Option<String>,
    /// Only entries about this server.
    pub server_id: Option<Uuid>,
    /// The action, e.g. `server.start_requested`.
    pub action: Option<String>,
    /// Only entries of this unit of work.
    pub correlation_id: Option<Uuid>,
    /// Wait (up to 5 s) until the audit read model has reached this global position.
    pub min_position: Option<i64>,
}

/// Streams the audit trail, oldest first, as a file.
#[utoipa::path(
    get,
    path = "/api/v1/audit/export",
    tag = "audit",
    params(ExportQuery),
    responses(
        (status = 200, description = "The audit trail, oldest first, streamed", content(
            (String = "application/x-ndjson"),
            (String = "text/csv"),
        )),
        (status = 400, description = "Malformed parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Inverted time range", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The read model did not reach `min_position` in time", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn export(
    state: web::Data<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    check_range(query.from, query.to)?;
    await_position(
        &state.pool,
        berth_projections::audit::NAME,
        query.min_position,
    )
    .await?;
    let format = query.format.unwrap_or_default();
    let filter = AuditFilter {
        actor: query.actor,
        server_id: query.server_id,
        action: query.action,
        from: query.from,
        to: query.to,
        correlation_id: query.correlation_id,
        owner: principal.owner_filter(),
    };
    // The first batch is read before answering, so a database that is down gets a 503
    // instead of a 200 cut short.
    let mut file = AuditFile::new(filter, format);
    let first = {
        let client = state.pool.get().await?;
        file.read_batch(&client).await?
    };
    let disposition = ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![DispositionParam::Filename(format.file_name().into())],
    };
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((header::CONTENT_DISPOSITION, disposition))
        .streaming(chunks(state.pool.clone(), file, first)))
}

/// One chunk per batch; a failure mid-way aborts the response (the status is already
/// sent), so a client never mistakes a cut-short file for a complete one.
fn chunks(
    pool: Pool,
    file: AuditFile,
    first: Vec<AuditEntry>,
) -> impl Stream<Item = Result<Bytes, ApiError>> {
    stream::try_unfold(
        (pool, file, Some(first)),
        |(pool, mut file, first)| async move {
            let chunk = match first {
                Some(batch) => Some(file.format_batch(&batch)?),
                None => {
                    let client = pool.get().await?;
                    file.next_chunk(&client).await?
                }
            };
            Ok(chunk.map(|bytes| (Bytes::from(bytes), (pool, file, None))))
        },
    )
}
