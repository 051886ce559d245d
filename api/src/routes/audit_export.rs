//! `GET /api/v1/audit/export`: the audit trail as a streamed JSON Lines or CSV file,
//! read batch after batch so memory stays constant however long the trail is.

use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{web, HttpResponse};
use berth_projections::{audit_batch, AuditEntry, AuditFilter};
use chrono::{DateTime, SecondsFormat, Utc};
use deadpool_postgres::Pool;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Principal;
use crate::consistency::await_position;
use crate::extract::ApiQuery;
use crate::problem::{ApiError, Problem};
use crate::routes::audit::check_range;
use crate::state::AppState;

/// Entries read per database round trip (and per chunk sent).
pub const BATCH: i64 = 1000;

/// The CSV columns, in order; the same names as the JSON fields.
pub const CSV_COLUMNS: [&str; 10] = [
    "position",
    "at",
    "actor",
    "action",
    "target_type",
    "target_id",
    "summary",
    "request_id",
    "correlation_id",
    "causation_id",
];

/// The export's file format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// One JSON object per line (`application/x-ndjson`).
    #[default]
    Jsonl,
    /// Comma-separated values with a header row (`text/csv`).
    Csv,
}

impl ExportFormat {
    fn content_type(self) -> &'static str {
        match self {
            Self::Jsonl => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Self::Jsonl => "berth-audit.jsonl",
            Self::Csv => "berth-audit.csv",
        }
    }
}

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
    let first = {
        let client = state.pool.get().await?;
        audit_batch(&client, &filter, 0, BATCH).await?
    };
    let disposition = ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![DispositionParam::Filename(format.file_name().into())],
    };
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((header::CONTENT_DISPOSITION, disposition))
        .streaming(chunks(state.pool.clone(), filter, format, first)))
}

struct Cursor {
    pool: Pool,
    filter: AuditFilter,
    format: ExportFormat,
    pending: Option<Vec<AuditEntry>>,
    after: i64,
    header_sent: bool,
    done: bool,
}

/// One chunk per batch; a failure mid-way aborts the response (the status is already
/// sent), so a client never mistakes a cut-short file for a complete one.
fn chunks(
    pool: Pool,
    filter: AuditFilter,
    format: ExportFormat,
    first: Vec<AuditEntry>,
) -> impl Stream<Item = Result<Bytes, ApiError>> {
    let cursor = Cursor {
        pool,
        filter,
        format,
        pending: Some(first),
        after: 0,
        header_sent: false,
        done: false,
    };
    stream::try_unfold(cursor, |mut c| async move {
        if c.done {
            return Ok(None);
        }
        let mut out = BytesMut::new();
        if c.format == ExportFormat::Csv && !c.header_sent {
            out.extend_from_slice(CSV_COLUMNS.join(",").as_bytes());
            out.extend_from_slice(b"\r\n");
            c.header_sent = true;
        }
        let batch = match c.pending.take() {
            Some(batch) => batch,
            None => {
                let client = c.pool.get().await?;
                audit_batch(&client, &c.filter, c.after, BATCH).await?
            }
        };
        c.done = i64::try_from(batch.len()).unwrap_or(i64::MAX) < BATCH;
        if let Some(last) = batch.last() {
            c.after = last.position;
        }
        for entry in &batch {
            match c.format {
                ExportFormat::Jsonl => write_jsonl(&mut out, entry)?,
                ExportFormat::Csv => write_csv(&mut out, entry),
            }
        }
        Ok(Some((out.freeze(), c)))
    })
}

fn write_jsonl(out: &mut BytesMut, entry: &AuditEntry) -> Result<(), ApiError> {
    let line = serde_json::to_vec(entry).map_err(ApiError::internal)?;
    out.extend_from_slice(&line);
    out.extend_from_slice(b"\n");
    Ok(())
}

fn write_csv(out: &mut BytesMut, e: &AuditEntry) {
    let at = e.at.to_rfc3339_opts(SecondsFormat::Micros, true);
    let fields: [&str; 10] = [
        &e.position.to_string(),
        &at,
        &e.actor,
        &e.action,
        &e.target_type,
        &e.target_id,
        &e.summary,
        e.request_id.as_deref().unwrap_or_default(),
        e.correlation_id.as_deref().unwrap_or_default(),
        e.causation_id.as_deref().unwrap_or_default(),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b",");
        }
        out.extend_from_slice(csv_field(field).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// RFC 4180 quoting: fields with a comma, quote, line break or edge space are quoted,
/// quotes inside doubled. A field a spreadsheet would run as a formula (leading `=`,
/// `+`, `-`, `@`, tab or carriage return) is prefixed with `'` so it stays text.
pub fn csv_field(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        return csv_field(&format!("'{value}")).into_owned().into();
    }
    let needs_quotes =
        value.contains([',', '"', '\n', '\r']) || value.starts_with(' ') || value.ends_with(' ');
    if needs_quotes {
        format!("\"{}\"", value.replace('"', "\"\"")).into()
    } else {
        value.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field(""), "");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(" padded"), "\" padded\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("@cmd"), "'@cmd");
    }

    #[test]
    fn csv_rows_follow_the_header() {
        let entry = AuditEntry {
            position: 7,
            at: DateTime::<Utc>::from_timestamp(0, 0).unwrap_or_default(),
            actor: "user:admin".into(),
            action: "server.created".into(),
            target_type: "server".into(),
            target_id: "abc".into(),
            summary: "created server \"x\", stopped".into(),
            request_id: Some("r".into()),
            correlation_id: None,
            causation_id: None,
        };
        let mut out = BytesMut::new();
        write_csv(&mut out, &entry);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "7,1970-01-01T00:00:00.000000Z,user:admin,server.created,server,abc,\"created server \"\"x\"\", stopped\",r,,\r\n"
        );
    }
}
