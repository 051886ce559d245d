//! The audit trail as a file, JSON Lines or CSV, written batch after batch so memory
//! stays constant however long the trail is. `GET /api/v1/audit/export` streams it and
//! `berth audit export` writes it, from the same writers.

use berth_infrastructure::StoreError;
use berth_projections::{audit_batch, AuditEntry, AuditFilter};
use chrono::SecondsFormat;
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use utoipa::ToSchema;

/// Entries read per database round trip (and per chunk written).
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// One JSON object per line (`application/x-ndjson`).
    #[default]
    Jsonl,
    /// Comma-separated values with a header row (`text/csv`).
    Csv,
}

impl ExportFormat {
    /// The media type of a file in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jsonl => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }

    /// The file name offered for download.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Jsonl => "berth-audit.jsonl",
            Self::Csv => "berth-audit.csv",
        }
    }
}

/// Writes the entries matching a filter, oldest first, one chunk per batch: the CSV
/// header comes with the first chunk, and the file is complete when
/// [`AuditFile::next_chunk`] answers `None`.
pub struct AuditFile {
    filter: AuditFilter,
    format: ExportFormat,
    after: i64,
    header_written: bool,
    done: bool,
    entries: u64,
}

impl AuditFile {
    /// A file of the entries matching `filter`.
    pub fn new(filter: AuditFilter, format: ExportFormat) -> Self {
        Self {
            filter,
            format,
            after: 0,
            header_written: false,
            done: false,
            entries: 0,
        }
    }

    /// The next batch read through `client`, formatted; `None` once the file is complete.
    pub async fn next_chunk(
        &mut self,
        client: &impl GenericClient,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let batch = self.read_batch(client).await?;
        self.format_batch(&batch).map(Some)
    }

    /// Reads the next batch without formatting it (see [`AuditFile::format_batch`]).
    pub async fn read_batch(
        &mut self,
        client: &impl GenericClient,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        audit_batch(client, &self.filter, self.after, BATCH).await
    }

    /// Formats `batch`, the batch [`AuditFile::read_batch`] read last, and moves past it.
    pub fn format_batch(&mut self, batch: &[AuditEntry]) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        if self.format == ExportFormat::Csv && !self.header_written {
            out.extend_from_slice(CSV_COLUMNS.join(",").as_bytes());
            out.extend_from_slice(b"\r\n");
            self.header_written = true;
        }
        self.done = i64::try_from(batch.len()).unwrap_or(i64::MAX) < BATCH;
        if let Some(last) = batch.last() {
            self.after = last.position;
        }
        for entry in batch {
            match self.format {
                ExportFormat::Jsonl => write_jsonl(&mut out, entry)?,
                ExportFormat::Csv => write_csv(&mut out, entry),
            }
        }
        self.entries += batch.len() as u64;
        Ok(out)
    }

    /// How many entries were written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }
}

/// Appends `entry` as one line of JSON.
pub fn write_jsonl(out: &mut Vec<u8>, entry: &AuditEntry) -> Result<(), StoreError> {
    serde_json::to_writer(&mut *out, entry).map_err(|e| {
        StoreError::Malformed(format!("audit entry {} as JSON: {e}", entry.position))
    })?;
    out.push(b'\n');
    Ok(())
}

/// Appends `entry` as one CSV row of [`CSV_COLUMNS`].
pub fn write_csv(out: &mut Vec<u8>, e: &AuditEntry) {
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
            out.push(b',');
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
    use chrono::{DateTime, Utc};

    use super::*;

    fn entry() -> AuditEntry {
        AuditEntry {
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
            event: "/api/v1/events/7".into(),
        }
    }

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
        let mut out = Vec::new();
        write_csv(&mut out, &entry());
        assert_eq!(
            String::from_utf8_lossy(&out),
            "7,1970-01-01T00:00:00.000000Z,user:admin,server.created,server,abc,\"created server \"\"x\"\", stopped\",r,,\r\n"
        );
    }

    #[test]
    fn json_lines_link_to_their_event() {
        let mut out = Vec::new();
        assert!(write_jsonl(&mut out, &entry()).is_ok());
        let text = String::from_utf8_lossy(&out);
        assert!(text.ends_with('\n') && text.lines().count() == 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(line["event"], "/api/v1/events/7");
        assert_eq!(line["position"], 7);
    }

    #[test]
    fn the_header_comes_once_and_a_short_batch_ends_the_file() {
        let mut file = AuditFile::new(AuditFilter::default(), ExportFormat::Csv);
        let first = file.format_batch(&[entry()]).unwrap_or_default();
        assert!(String::from_utf8_lossy(&first).starts_with("position,at,"));
        assert_eq!(file.entries(), 1);
        assert!(file.done);
        let mut file = AuditFile::new(AuditFilter::default(), ExportFormat::Jsonl);
        let empty = file.format_batch(&[]).unwrap_or_default();
        assert!(empty.is_empty() && file.done);
    }
}
