//! The OpenAPI document of a registered API as a request gives it: a JSON object, YAML or
//! JSON text, or a URL fetched once here. What the entry keeps is always the JSON, in its
//! event, so it never changes behind anyone's back (a later change at the URL is a new
//! registration).

use std::time::Duration;

use berth_infrastructure::runtime::endpoint::Outside;
use futures_util::StreamExt;
use serde_json::Value;

use crate::http::dto::catalog::{CatalogEntryBody, RuntimeSpecDto};
use crate::http::problem::ApiError;

/// The largest document fetched.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// How long fetching one may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Fetches documents the way registered APIs are reached: only at the addresses they
/// may be.
#[derive(Clone)]
pub struct DocumentFetcher {
    outside: Outside,
}

impl DocumentFetcher {
    /// Fetching through `outside` (the endpoint runtime's).
    pub fn new(outside: Outside) -> Self {
        Self { outside }
    }

    /// Leaves `body`'s document a JSON object when it is a registered API's: text is
    /// parsed, a URL fetched. A 422 names the field when that cannot be done.
    pub async fn resolve(&self, body: &mut CatalogEntryBody) -> Result<(), ApiError> {
        let RuntimeSpecDto::OpenApi {
            document,
            document_url,
            ..
        } = &mut body.runtime
        else {
            return Ok(());
        };
        *document = Some(match (document.take(), document_url.take()) {
            (Some(Value::String(text)), None) => parse(&text, "runtime.document")?,
            (Some(given), None) => given,
            (None, Some(url)) => parse(&self.fetch(&url).await?, "runtime.document_url")?,
            (Some(_), Some(_)) | (None, None) => {
                return Err(ApiError::invalid_field(
                    "runtime.document",
                    "give the document or `document_url`, one of them",
                ))
            }
        });
        Ok(())
    }

    async fn fetch(&self, url: &str) -> Result<String, ApiError> {
        let refused = |why: String| {
            ApiError::invalid_field("runtime.document_url", format!("cannot be fetched: {why}"))
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| refused(format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(refused("must be an http:// or https:// URL".into()));
        }
        self.outside.check(url).map_err(refused)?;
        let response = self
            .outside
            .client
            .get(parsed)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| refused(described(&e.without_url())))?;
        if !response.status().is_success() {
            return Err(refused(format!("it answered {}", response.status())));
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| refused(described(&e.without_url())))?;
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(refused(format!(
                    "it is larger than {MAX_DOCUMENT_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| refused("it is not UTF-8 text".into()))
    }
}

/// A reqwest error with its causes (the refusal of an address is the innermost).
fn described(error: &reqwest::Error) -> String {
    let mut said = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        said = format!("{said}: {cause}");
        source = cause.source();
    }
    said
}

/// A document in YAML or JSON text (JSON is YAML) as JSON.
fn parse(text: &str, field: &str) -> Result<Value, ApiError> {
    let value: Value = yaml_serde::from_str(text)
        .map_err(|e| ApiError::invalid_field(field, format!("is neither JSON nor YAML: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid_field(
            field,
            "must be an OpenAPI document (an object)",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_text_become_the_same_document_and_anything_else_is_named() {
        let yaml = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get:\n      responses:\n        200: {description: ok}\n";
        let json = r#"{"openapi": "3.0.3", "info": {"title": "t", "version": "1"},
                       "paths": {"/a": {"get": {"responses": {"200": {"description": "ok"}}}}}}"#;
        let from_yaml = parse(yaml, "runtime.document").expect("YAML");
        assert_eq!(from_yaml, parse(json, "runtime.document").expect("JSON"));
        assert_eq!(
            from_yaml["paths"]["/a"]["get"]["responses"]["200"]["description"],
            "ok"
        );
        for bad in ["[1, 2]", "just words", "{unclosed: [", ""] {
            let error = parse(bad, "runtime.document").expect_err(bad);
            assert!(
                format!("{error:?}").contains("runtime.document"),
                "{error:?}"
            );
        }
    }
}
