//! What a server answers through the gateway, less its own secrets.
//!
//! A server may print its credentials (a token in an error message, a URL with its key),
//! and through the gateway its answers reach every caller it is shared with. Every
//! answer, list and error that comes from a server is passed through here first.

use berth_application::redaction::Redactor;
use rmcp::model::ErrorData;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// `value` with every string in it redacted by `redactor`. When the value cannot be taken
/// apart and put back (it always can: these are the SDK's own types), an error stands in
/// its place rather than an answer that was not vetted.
pub(crate) fn redacted<T: Serialize + DeserializeOwned>(
    redactor: &Redactor,
    value: T,
) -> Result<T, ErrorData> {
    if redactor.is_empty() {
        return Ok(value);
    }
    let unvetted = |e: serde_json::Error| {
        tracing::warn!(error = %e, "a server's answer could not be vetted for its secrets");
        ErrorData::internal_error(
            "the server's answer could not be vetted for its secrets",
            None,
        )
    };
    let mut json = serde_json::to_value(value).map_err(unvetted)?;
    redactor.redact_json(&mut json);
    serde_json::from_value(json).map_err(unvetted)
}

/// An error that came from a server (or quotes it), redacted the same way.
pub(crate) fn redacted_error(redactor: &Redactor, error: ErrorData) -> ErrorData {
    redacted(redactor, error).unwrap_or_else(|unvetted| unvetted)
}
