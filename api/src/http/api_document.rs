//! The OpenAPI document of a registered API as a request gives it: a JSON object, YAML or
//! JSON text, or a URL fetched once here. What the entry keeps is always the JSON, in its
//! event, so it never changes behind anyone's back (a later change at the URL is a new
//! registration).

use std::time::Duration;

use berth_infrastructure::error::causes;
use berth_infrastructure::runtime::endpoint::Outside;
use futures_util::StreamExt;
use std::cell::Cell;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

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
            (Some(Value::String(text)), None) => parse_apart(text, "runtime.document").await?,
            (Some(given), None) => given,
            (None, Some(url)) => {
                parse_apart(self.fetch(&url).await?, "runtime.document_url").await?
            }
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
            .map_err(|e| refused(causes(&e.without_url())))?;
        if !response.status().is_success() {
            return Err(refused(format!("it answered {}", response.status())));
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| refused(causes(&e.without_url())))?;
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

/// The most values a document may hold once read: YAML's aliases repeat what they
/// point at, so a few kilobytes can stand for billions of values, and are refused while
/// being read rather than after.
pub const MAX_DOCUMENT_VALUES: usize = 2_000_000;

/// [`parse`] on a blocking thread: a large document takes a while to read.
async fn parse_apart(text: String, field: &'static str) -> Result<Value, ApiError> {
    tokio::task::spawn_blocking(move || parse(&text, field))
        .await
        .map_err(ApiError::internal)?
}

/// A document in YAML or JSON text (JSON is YAML) as JSON.
fn parse(text: &str, field: &str) -> Result<Value, ApiError> {
    let budget = Cell::new(MAX_DOCUMENT_VALUES);
    let deserializer = yaml_serde::Deserializer::from_str(text);
    let value = Bounded(&budget)
        .deserialize(deserializer)
        .map_err(|e| ApiError::invalid_field(field, format!("is neither JSON nor YAML: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid_field(
            field,
            "must be an OpenAPI document (an object)",
        ));
    }
    Ok(value)
}

/// Reads one value as JSON, each value taken from `budget` (an error when it runs out).
struct Bounded<'a>(&'a Cell<usize>);

impl Bounded<'_> {
    fn take<E: serde::de::Error>(&self) -> Result<(), E> {
        let left = self.0.get();
        if left == 0 {
            return Err(E::custom(format!(
                "it grows past {MAX_DOCUMENT_VALUES} values once its aliases are expanded"
            )));
        }
        self.0.set(left - 1);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.take()?;
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Bounded(self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.take()?;
            let value = map.next_value_seed(Bounded(self.0))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
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

    #[test]
    fn aliases_that_would_expand_past_the_bound_are_refused_while_reading() {
        // 2,000 values referred to 2,000 times: 4 million once expanded, from 20 KB.
        let items = vec!["x"; 2000].join(", ");
        let refs = vec!["*a"; 2000].join(", ");
        let bomb = format!("openapi: 3.1.0\nanchor: &a [{items}]\nrefs: [{refs}]\n");
        assert!(bomb.len() < 20_000);
        let error = parse(&bomb, "runtime.document").expect_err("a bomb");
        assert!(format!("{error:?}").contains("grows past"), "{error:?}");
        // The same shape, small, is read.
        let small = "openapi: 3.1.0\nanchor: &a [x, y]\nrefs: [*a, *a]\n";
        let read = parse(small, "runtime.document").expect("a small document");
        assert_eq!(read["refs"][1][1], "y");
    }
}
