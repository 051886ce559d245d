//! One line of an export: an event with every column, and its validation on import.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::TransferError;

/// One exported event, as one JSON object on one line. `payload` and `metadata` are
/// the stored JSON exactly as PostgreSQL renders it, so nothing is reformatted.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLine {
    /// Global position.
    pub position: i64,
    /// The transaction the event was first committed in.
    pub transaction_id: u64,
    /// The event's id.
    pub event_id: Uuid,
    /// `server`, `catalog_entry`, ...
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// 1, 2, 3 ... within the aggregate.
    pub sequence: i64,
    /// E.g. `ServerStartRequested`.
    pub event_type: String,
    /// Payload shape version.
    pub event_version: String,
    /// The event itself.
    pub payload: Box<RawValue>,
    /// actor, request_id, correlation_id, causation_id.
    pub metadata: Box<RawValue>,
    /// When it was recorded, UTC with microseconds (`2025-01-31T09:12:44.123456Z`).
    pub recorded_at: String,
    /// The hash of the previous event of the stream, hex (null for sequence 1).
    pub prev_hash: Option<String>,
    /// `sha256(prev_hash || canonical bytes)`, hex.
    pub hash: String,
}

/// A signed checkpoint carried by an export, on a line of its own after the events:
/// `{"checkpoint": {...}}`. Import passes over it: the store it goes into signs its own.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointLine {
    /// The checkpoint.
    pub checkpoint: crate::checkpoint::SignedCheckpoint,
}

/// How a checkpoint line starts, as the export writes it.
pub(super) const CHECKPOINT_LINE_START: &str = "{\"checkpoint\":";

/// A line that passed validation, ready to insert.
#[derive(Debug)]
pub(super) struct ValidLine {
    pub line: u64,
    pub position: i64,
    pub transaction_id: u64,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub metadata: String,
    pub recorded_at: DateTime<Utc>,
    pub prev_hash: Option<[u8; 32]>,
    pub hash: [u8; 32],
}

impl ValidLine {
    /// Parses and checks line number `line` of an export.
    pub fn parse(line: u64, text: &str) -> Result<Self, TransferError> {
        if text.trim().is_empty() {
            return Err(TransferError::invalid(
                line,
                None,
                "empty line: every line must be one event",
            ));
        }
        if !text.trim_start().starts_with('{') {
            return Err(TransferError::invalid(
                line,
                None,
                "not a JSON object: every line must be one event",
            ));
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed: EventLine = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            // Missing fields are reported at the root (`.`), their message naming them;
            // broken JSON where no key could be read (`?`).
            let field = (path != "." && path != "?").then_some(path);
            TransferError::invalid(line, field.as_deref(), json_message(e.inner()))
        })?;
        de.end()
            .map_err(|e| TransferError::invalid(line, None, json_message(&e)))?;
        if parsed.position <= 0 {
            return Err(TransferError::invalid(
                line,
                Some("position"),
                "must be greater than 0",
            ));
        }
        if parsed.sequence <= 0 {
            return Err(TransferError::invalid(
                line,
                Some("sequence"),
                "must be greater than 0",
            ));
        }
        let recorded_at = DateTime::parse_from_rfc3339(&parsed.recorded_at)
            .map_err(|e| {
                TransferError::invalid(
                    line,
                    Some("recorded_at"),
                    format!("not an RFC 3339 time: {e}"),
                )
            })?
            .with_timezone(&Utc);
        let prev_hash = parsed
            .prev_hash
            .as_deref()
            .map(|h| digest(line, "prev_hash", h))
            .transpose()?;
        if (parsed.sequence == 1) != prev_hash.is_none() {
            return Err(TransferError::invalid(
                line,
                Some("prev_hash"),
                "must be null exactly when sequence is 1",
            ));
        }
        Ok(Self {
            line,
            position: parsed.position,
            transaction_id: parsed.transaction_id,
            event_id: parsed.event_id,
            aggregate_type: parsed.aggregate_type,
            aggregate_id: parsed.aggregate_id,
            sequence: parsed.sequence,
            event_type: parsed.event_type,
            event_version: parsed.event_version,
            payload: parsed.payload.get().to_owned(),
            metadata: parsed.metadata.get().to_owned(),
            recorded_at,
            prev_hash,
            hash: digest(line, "hash", &parsed.hash)?,
        })
    }
}

/// serde_json's message without its "at line 1 column N" (every line of the file is
/// line 1 to it), with the column kept.
pub(super) fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(end) if e.line() > 0 => format!("{} (column {})", &text[..end], e.column()),
        _ => text,
    }
}

/// A SHA-256 digest written as 64 hex digits.
fn digest(line: u64, field: &str, text: &str) -> Result<[u8; 32], TransferError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| TransferError::invalid(line, Some(field), "must be 64 hexadecimal digits"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"position":7,"transaction_id":900,"event_id":"0193e2a0-0000-7000-8000-000000000001","aggregate_type":"server","aggregate_id":"s1","sequence":2,"event_type":"ServerStarted","event_version":"1","payload":{"a": [1, 2.50]},"metadata":{"actor":"user:ann"},"recorded_at":"2025-01-31T09:12:44.123456Z","prev_hash":"00000000000000000000000000000000000000000000000000000000000000ff","hash":"1100000000000000000000000000000000000000000000000000000000000000"}"#;

    fn error(text: &str) -> String {
        match ValidLine::parse(4, text) {
            Ok(line) => panic!("accepted: {line:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_good_line_keeps_its_json_exactly() {
        let line = ValidLine::parse(1, GOOD).unwrap();
        assert_eq!(line.position, 7);
        assert_eq!(line.transaction_id, 900);
        assert_eq!(line.payload, r#"{"a": [1, 2.50]}"#);
        assert_eq!(line.prev_hash.map(|h| h[31]), Some(0xff));
        assert_eq!(line.hash[0], 0x11);
        assert_eq!(line.recorded_at.timestamp_subsec_micros(), 123_456);
    }

    #[test]
    fn bad_lines_are_named_by_line_and_field() {
        assert_eq!(
            error(""),
            "line 4: empty line: every line must be one event"
        );
        assert_eq!(
            error("{not json"),
            "line 4: key must be a string (column 2)"
        );
        assert_eq!(
            error("[7, 900]"),
            "line 4: not a JSON object: every line must be one event"
        );
        let missing = error(&GOOD.replace(r#","hash":"11"#, r#","hush":"11"#));
        assert!(
            missing.contains("line 4") && missing.contains("hush"),
            "{missing}"
        );
        let no_hash = error(&GOOD.replace(
            r#","hash":"1100000000000000000000000000000000000000000000000000000000000000""#,
            "",
        ));
        assert!(no_hash.contains("missing field `hash`"), "{no_hash}");
        let wrong_type = error(&GOOD.replace(r#""sequence":2"#, r#""sequence":"2""#));
        assert!(
            wrong_type.starts_with("line 4, field `sequence`: "),
            "{wrong_type}"
        );
        let bad_id = error(&GOOD.replace("0193e2a0-", "zz"));
        assert!(bad_id.starts_with("line 4, field `event_id`: "), "{bad_id}");
        let bad_time = error(&GOOD.replace("2025-01-31T", "yesterday "));
        assert!(
            bad_time.starts_with("line 4, field `recorded_at`: "),
            "{bad_time}"
        );
        let short_hash = error(&GOOD.replace(r#""hash":"11"#, r#""hash":"1"#));
        assert_eq!(
            short_hash,
            "line 4, field `hash`: must be 64 hexadecimal digits"
        );
        let first_with_prev = error(&GOOD.replace(r#""sequence":2"#, r#""sequence":1"#));
        assert!(first_with_prev.starts_with("line 4, field `prev_hash`: "));
        let position = error(&GOOD.replace(r#""position":7"#, r#""position":0"#));
        assert!(position.starts_with("line 4, field `position`: "));
        let trailing = error(&format!("{GOOD} {{}}"));
        assert!(
            trailing.starts_with("line 4: trailing characters (column"),
            "{trailing}"
        );
    }
}
