//! Taking a server's secrets out of what it said before it is recorded.
//!
//! A server's output reaches the event log (the reason it failed, the tools it offers),
//! and the log is append-only and exported: a secret printed there stays forever. So
//! whatever Berth records of a server's own words first loses every secret value of that
//! server, in the forms programs commonly print it: as it is, URL-encoded, hex, and
//! base64 (standard and URL-safe, at any alignment, so a secret inside an encoded
//! `user:secret` pair is caught too).

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use berth_domain::server::Server;
use cqrs_es::persist::PersistedEventRepository;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::commands::CommandBus;
use crate::ports::CipherError;

/// What stands where a secret was.
pub const REDACTED: &str = "[redacted]";

/// Values and encoded forms shorter than this are not searched for: they would match
/// ordinary words (a secret `x` would take every x out of a message), and a value that
/// short protects nothing anyway.
pub const MIN_REDACTED_LEN: usize = 4;

/// Removes a fixed set of secret values from text. Holds the values (and their
/// encodings) in memory only; its `Debug` shows how many, never which.
#[derive(Default)]
pub struct Redactor {
    /// Longest first, so a longer form is replaced before a shorter one inside it.
    needles: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("forms", &self.needles.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor of `secrets`.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a SecretString>) -> Self {
        let mut needles = Vec::new();
        let mut encodings = Vec::new();
        for secret in secrets {
            let plain = secret.expose_secret();
            if plain.len() < MIN_REDACTED_LEN {
                continue;
            }
            needles.push(plain.to_owned());
            encodings.extend([
                form_urlencoded::byte_serialize(plain.as_bytes()).collect::<String>(),
                percent_encoded(plain.as_bytes()),
                hex_lower(plain.as_bytes()),
                hex_lower(plain.as_bytes()).to_ascii_uppercase(),
            ]);
            for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                encodings.extend(base64_cores(plain.as_bytes(), engine));
            }
        }
        needles.extend(
            encodings
                .into_iter()
                .filter(|e| e.len() >= MIN_REDACTED_LEN),
        );
        Self::of(needles)
    }

    /// What both `self` and `other` redact.
    pub fn union(&self, other: &Redactor) -> Self {
        Self::of(self.needles.iter().chain(&other.needles).cloned().collect())
    }

    fn of(mut needles: Vec<String>) -> Self {
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Self { needles }
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every form of every secret replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), REDACTED);
            }
        }
        out
    }

    /// Every string (and object key) in `value`, redacted.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => *s = self.redact(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    self.redact_json(&mut v);
                    map.insert(self.redact(&key), v);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

impl<R: PersistedEventRepository + Clone> CommandBus<R> {
    /// What takes `server`'s (of id `id`) secrets out of text. An error when they cannot
    /// be read now (the key store is unreachable): what the server says then cannot be
    /// vetted, and callers fail closed. A secret whose key was destroyed is skipped: it
    /// was never handed to the server.
    pub async fn redactor_of(&self, server: &Server, id: Uuid) -> Result<Redactor, CipherError> {
        if server.secrets.is_empty() {
            return Ok(Redactor::default());
        }
        self.cipher().prepare(&server.owner).await?;
        let mut plain = Vec::with_capacity(server.secrets.len());
        for (key, sealed) in &server.secrets {
            match self.cipher().open(&server.owner, id, key, sealed) {
                Ok(secret) => plain.push(secret),
                Err(CipherError::Destroyed { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Redactor::new(&plain))
    }
}

/// Every byte but unreserved ones as `%XX` (what `encodeURIComponent` and most HTTP
/// libraries write for a path segment or query value).
fn percent_encoded(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The part of the base64 encoding of `bytes` that is the same wherever `bytes` starts
/// in a longer encoded string: for each of the three alignments, the characters that
/// depend only on `bytes` (not on what comes before or after them).
fn base64_cores(bytes: &[u8], engine: &impl Engine) -> Vec<String> {
    (0..3usize)
        .filter_map(|offset| {
            let mut padded = vec![0u8; offset];
            padded.extend_from_slice(bytes);
            let encoded = engine.encode(&padded);
            // Characters wholly inside the leading filler, or sharing bits with it.
            let skip = (offset * 8).div_ceil(6);
            // The last character shares bits with whatever follows unless the data ends
            // on a 3-byte boundary.
            let keep_end = if padded.len() % 3 == 0 {
                encoded.len()
            } else {
                (padded.len() * 8) / 6
            };
            encoded.get(skip..keep_end).map(str::to_owned)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(secrets: &[&str]) -> Redactor {
        let secrets: Vec<SecretString> = secrets.iter().map(|s| (*s).into()).collect();
        Redactor::new(&secrets)
    }

    #[test]
    fn a_secret_is_removed_as_it_is() {
        let r = redactor(&["s3cr3t-t0ken"]);
        assert_eq!(
            r.redact("auth failed for token s3cr3t-t0ken, again s3cr3t-t0ken"),
            "auth failed for token [redacted], again [redacted]"
        );
    }

    #[test]
    fn url_encoded_and_hex_forms_are_removed() {
        let r = redactor(&["p@ss word/+"]);
        for text in [
            "GET /x?key=p%40ss+word%2F%2B HTTP/1.1",
            "GET /x?key=p%40ss%20word%2F%2B HTTP/1.1",
            "key=70407373",
        ] {
            let out = r.redact(text);
            assert!(!out.contains("p%40ss"), "{out}");
        }
        let hex = hex_lower(b"p@ss word/+");
        assert_eq!(r.redact(&format!("dump {hex}")), "dump [redacted]");
    }

    #[test]
    fn base64_is_removed_at_every_alignment_inside_longer_strings() {
        let secret = "correct-horse-battery";
        let r = redactor(&[secret]);
        for prefix in ["", "u:", "us:", "use:"] {
            for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                let encoded = engine.encode(format!("{prefix}{secret}:tail"));
                let out = r.redact(&format!("Authorization: Basic {encoded}"));
                assert!(out.contains(REDACTED), "{prefix:?}: {out}");
                // What stays is the header, the encoded prefix and tail (at most 6 and 7
                // characters) and at most one character of fringe on each side.
                let left = out.replace(REDACTED, "");
                assert!(
                    left.len() <= "Authorization: Basic ".len() + 6 + 7 + 2,
                    "{out}"
                );
            }
        }
    }

    #[test]
    fn strings_and_keys_of_json_are_redacted() {
        let r = redactor(&["hunter22"]);
        let mut value = serde_json::json!({
            "name": "tool",
            "description": "uses hunter22",
            "hunter22": [1, "x hunter22 y"]
        });
        r.redact_json(&mut value);
        assert!(!value.to_string().contains("hunter22"), "{value}");
    }

    #[test]
    fn values_too_short_to_tell_from_words_redact_nothing() {
        let r = redactor(&["", "x", "abc"]);
        assert!(r.is_empty());
        assert_eq!(r.redact("exiting abc"), "exiting abc");
    }
}
