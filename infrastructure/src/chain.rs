//! The hash chain's arithmetic, in Rust: the canonical bytes of an event and its hash
//! (see `migrations/V6__event_hash_chain.sql`), and PostgreSQL's text rendering of a
//! `jsonb` value, which those bytes contain.
//!
//! The writer hashes an event before it is stored ([`crate::append`]) and `berth verify`
//! hashes it again from the stored row ([`crate::verify`]); both go through
//! [`event_hash`], so they cannot drift apart. The writer renders the payload itself
//! ([`jsonb_text`]), while `verify` takes the database's own `payload::text`: a
//! rendering that differed from PostgreSQL's would show as a hash mismatch on the first
//! `verify`, and the tests compare the two renderings directly. The writer also asks the
//! database once per process whether it renders [`rendering_samples`] the same
//! ([`rendering_agrees`]), and leaves the hashing to the database's trigger if not.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// An event as its hash covers it, each field in its canonical text.
#[derive(Debug, Clone, Copy)]
pub struct HashedEvent<'a> {
    /// The global position.
    pub position: i64,
    /// The transaction it was first committed in (`origin_transaction_id` when imported).
    pub transaction_id: &'a str,
    /// The event id, lower-case and hyphenated.
    pub event_id: &'a str,
    /// The aggregate type.
    pub aggregate_type: &'a str,
    /// The aggregate id.
    pub aggregate_id: &'a str,
    /// The sequence in its stream.
    pub sequence: i64,
    /// The event type.
    pub event_type: &'a str,
    /// The event version.
    pub event_version: &'a str,
    /// The payload as `jsonb` text ([`jsonb_text`]).
    pub payload: &'a str,
    /// The metadata as `jsonb` text.
    pub metadata: &'a str,
    /// The time recorded, in UTC: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub recorded_at: &'a str,
}

/// The hash of `event` chained to `prev_hash` (none for a stream's first event).
pub fn event_hash(prev_hash: Option<&[u8]>, event: &HashedEvent<'_>) -> [u8; 32] {
    chain_hash(
        prev_hash,
        &[
            &event.position.to_string(),
            event.transaction_id,
            event.event_id,
            event.aggregate_type,
            event.aggregate_id,
            &event.sequence.to_string(),
            event.event_type,
            event.event_version,
            event.payload,
            event.metadata,
            event.recorded_at,
        ],
    )
}

/// `sha256(prev_hash || canonical bytes)`, the canonical bytes being each field prefixed
/// by its length in bytes and `:`, exactly as `events_canonical_bytes` builds them, in
/// the order [`event_hash`] gives.
fn chain_hash(prev_hash: Option<&[u8]>, fields: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.unwrap_or_default());
    for field in fields {
        hasher.update(field.len().to_string().as_bytes());
        hasher.update(b":");
        hasher.update(field.as_bytes());
    }
    hasher.finalize().into()
}

/// The text PostgreSQL gives for `value::jsonb::text`: object keys ordered by length and
/// then bytewise, `", "` and `": "` between items, strings escaped as `escape_json` does,
/// and numbers as `numeric` prints them.
pub fn jsonb_text(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Values that exercise every rule of [`jsonb_text`]: key order, escapes, numbers in
/// every notation, nesting.
fn rendering_samples() -> Vec<Value> {
    vec![
        json!({"bb": [1, 2.5, {}], "a": "x\"\\\n\u{1}é", "c": null, "ab": [], "é": true}),
        json!([1e-7, -0.0, 0.1, 1.5e16, 1e300, 5e-324, 123.456, -2.5e-3, 100.0]),
        json!([u64::MAX, i64::MIN, 0, -1, false]),
        json!({"\u{8}\u{c}\r\t\u{1f}": "\u{7f}\u{2028}😀/", "": {"": [[]]}}),
    ]
}

/// Whether the database behind `client` renders each of [`rendering_samples`] as
/// [`jsonb_text`] does.
pub async fn rendering_agrees<C: deadpool_postgres::GenericClient>(
    client: &C,
) -> Result<bool, tokio_postgres::Error> {
    let samples = rendering_samples();
    let row = client
        .query_one(
            "SELECT array_agg(v::text ORDER BY n) FROM unnest($1::jsonb[]) WITH ORDINALITY AS u(v, n)",
            &[&samples],
        )
        .await?;
    let theirs: Vec<String> = row.try_get(0)?;
    Ok(theirs == samples.iter().map(jsonb_text).collect::<Vec<_>>())
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) if n.is_f64() => out.push_str(&numeric_text(&n.to_string())),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // jsonb keeps keys shortest first, equal lengths in byte order.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|(a, _), (b, _)| {
                a.len()
                    .cmp(&b.len())
                    .then_with(|| a.as_bytes().cmp(b.as_bytes()))
            });
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, key);
                out.push_str(": ");
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// PostgreSQL's `escape_json`: the two-character escapes, `\u00xx` (lower-case hex) for
/// the other control characters, everything else (non-ASCII included) as it is.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// How `numeric` prints the JSON number `text`: plain decimal notation, as many
/// fractional digits as the text had less its exponent (never fewer than none), no
/// sign on zero. `1e-7` is `0.0000001`, `1.5e1` is `15`, `100.0` stays `100.0`.
fn numeric_text(text: &str) -> String {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (
            &unsigned[..at],
            unsigned[at + 1..].parse::<i64>().unwrap_or(0),
        ),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = format!("{whole}{fraction}");
    // The number is `digits` × 10^-scale.
    let scale = i64::try_from(fraction.len()).unwrap_or(0) - exponent;
    let shown_scale = usize::try_from(scale.max(0)).unwrap_or(0);
    if scale < 0 {
        digits.extend(std::iter::repeat_n(
            '0',
            usize::try_from(-scale).unwrap_or(0),
        ));
    }
    if digits.len() <= shown_scale {
        let pad = shown_scale + 1 - digits.len();
        digits.insert_str(0, &"0".repeat(pad));
    }
    let (int_part, frac_part) = digits.split_at(digits.len() - shown_scale);
    let int_part = match int_part.trim_start_matches('0') {
        "" => "0",
        trimmed => trimmed,
    };
    let zero = !digits.bytes().any(|b| b != b'0');
    let mut out = String::with_capacity(digits.len() + 2);
    if negative && !zero {
        out.push('-');
    }
    out.push_str(int_part);
    if !frac_part.is_empty() {
        out.push('.');
        out.push_str(frac_part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_bytes_are_length_prefixed() {
        let mut expected = Sha256::new();
        expected.update(b"ab");
        expected.update(b"1:x2:yz0:");
        let expected: [u8; 32] = expected.finalize().into();
        assert_eq!(chain_hash(Some(b"ab"), &["x", "yz", ""]), expected);
    }

    #[test]
    fn numbers_print_as_numeric_does() {
        for (given, printed) in [
            ("1e-7", "0.0000001"),
            ("1.5e1", "15"),
            ("100.0", "100.0"),
            ("-0.0", "0.0"),
            ("1.2345678901234568e20", "123456789012345680000"),
            ("0.1", "0.1"),
            ("-2.5E-3", "-0.0025"),
            ("1.0e-7", "0.00000010"),
            ("12.5e-1", "1.25"),
        ] {
            assert_eq!(numeric_text(given), printed, "{given}");
        }
    }

    #[test]
    fn objects_sort_keys_shortest_first_and_strings_escape_as_postgresql_does() {
        let value = json!({"bb": [1, 2.5, {}], "a": "x\"\\\n\u{1}é", "c": null, "ab": []});
        assert_eq!(
            jsonb_text(&value),
            r#"{"a": "x\"\\\n\u0001é", "c": null, "ab": [], "bb": [1, 2.5, {}]}"#
        );
    }
}
