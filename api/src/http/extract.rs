//! Strict request parsing: JSON bodies and query strings whose errors name the field
//! (`config.TOKEN`, `page_size`), and path ids, all answered as problem documents.
//!
//! actix's own `Json` and `Query` report serde's message without the field's path, so
//! these extractors run the same deserialisation through `serde_path_to_error`.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::{ready, LocalBoxFuture, Ready};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::http::problem::{ApiError, ProblemField};

/// The largest request body accepted (1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The deepest nesting of arrays and objects a JSON body may have.
pub const MAX_JSON_DEPTH: usize = 32;

/// The longest query-string parameter value accepted, in characters.
pub const MAX_QUERY_VALUE_CHARS: usize = 256;

/// The most query-string parameters accepted.
pub const MAX_QUERY_PARAMS: usize = 32;

/// A JSON request body, parsed strictly (unknown fields are refused by the DTOs).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_body(req, payload);
        Box::pin(async move { parse_json(&body.await?).map(JsonBody) })
    }
}

/// A JSON request body that may be left out: no body at all (or `null`) means
/// `T::default()`.
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default + 'static> FromRequest for OptionalJsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_body(req, payload);
        Box::pin(async move {
            let body = body.await?;
            let text = body.trim_ascii();
            if text.is_empty() || text == b"null" {
                return Ok(OptionalJsonBody(T::default()));
            }
            parse_json(&body).map(OptionalJsonBody)
        })
    }
}

/// The whole body of a JSON request, bounded by [`MAX_BODY_BYTES`].
fn read_body(
    req: &HttpRequest,
    payload: &mut Payload,
) -> LocalBoxFuture<'static, Result<web::BytesMut, ApiError>> {
    let media_type_ok = is_json(req);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut payload = payload.take();
    Box::pin(async move {
        if !media_type_ok {
            return Err(ApiError::UnsupportedMediaType);
        }
        if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
            return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
        }
        let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadRequest {
                detail: format!("the request body could not be read: {e}"),
                errors: Vec::new(),
            })?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    })
}

/// `application/json`, any `+json` type, or no content type at all.
fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON document into `T`, naming the offending field on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if json_depth(bytes) > MAX_JSON_DEPTH {
        return Err(ApiError::BadRequest {
            detail: format!(
                "the request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"
            ),
            errors: Vec::new(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let typed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match typed {
        Ok(value) => {
            de.end().map_err(|e| ApiError::BadRequest {
                detail: format!("the request body is not valid JSON: {e}"),
                errors: Vec::new(),
            })?;
            value
        }
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::BadRequest {
                    detail: format!("the request body is not valid JSON: {inner}"),
                    errors: Vec::new(),
                });
            }
            // A whole number written as `80.0` is still that number: read it again with
            // such numbers made integers. Anything else wrong is reported as it is.
            if !inner.to_string().contains("floating point") {
                return Err(field_error(&path, &strip_position(&inner.to_string())));
            }
            let mut document: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest {
                    detail: format!("the request body is not valid JSON: {e}"),
                    errors: Vec::new(),
                })?;
            whole_numbers_as_integers(&mut document);
            serde_path_to_error::deserialize(document).map_err(|e| {
                let path = e.path().to_string();
                field_error(&path, &strip_position(&e.into_inner().to_string()))
            })?
        }
    };
    Ok(value)
}

/// Writes every number with no fractional part (`80.0`, `1e3`) as an integer: JSON does
/// not tell them apart, and neither does JSON Schema's `integer`, so a count sent as
/// `80.0` means 80.
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if !(n.is_i64() || n.is_u64()) => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15) {
                // Exact: whole and below 2^53.
                #[allow(clippy::cast_possible_truncation)]
                let whole = f as i64;
                *value = Value::from(whole);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

/// The deepest nesting of `[` and `{` in `bytes`, outside strings. Not a validator:
/// malformed JSON is left to the parser.
fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// serde_json appends ` at line L column C`; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Maps a serde data error at `path` to the right problem: a missing field is a
/// well-formed but incomplete request (422); anything else is malformed (400).
fn field_error(path: &str, message: &str) -> ApiError {
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(|name| join(path, name))
    };
    if let Some(field) = named("missing field `") {
        return ApiError::Invalid(vec![ProblemField {
            field,
            message: "is required".into(),
        }]);
    }
    // serde_path_to_error already ends the path with the unknown key itself.
    if message.starts_with("unknown field `") {
        let field = match path {
            "." | "" => named("unknown field `").unwrap_or_default(),
            _ => path.to_string(),
        };
        return ApiError::bad_field(field, "is not a known field");
    }
    let field = if path == "." {
        String::new()
    } else {
        path.to_string()
    };
    if field.is_empty() {
        ApiError::BadRequest {
            detail: message.to_string(),
            errors: Vec::new(),
        }
    } else {
        ApiError::bad_field(field, message)
    }
}

fn join(path: &str, name: &str) -> String {
    if path == "." || path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Query-string parameters, parsed strictly: unknown parameters and wrong types are
/// refused with the parameter named.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequest for ApiQuery<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse_query(req.query_string()).map(ApiQuery))
    }
}

/// Parses a query string into `T`, naming the offending parameter on failure.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    for (i, (name, value)) in form_urlencoded::parse(query.as_bytes()).enumerate() {
        if i >= MAX_QUERY_PARAMS {
            return Err(ApiError::BadRequest {
                detail: format!("the query string has more than {MAX_QUERY_PARAMS} parameters"),
                errors: Vec::new(),
            });
        }
        let name_chars = name.chars().count();
        if name_chars > MAX_QUERY_VALUE_CHARS {
            return Err(ApiError::BadRequest {
                detail: format!(
                    "a query parameter name is longer than {MAX_QUERY_VALUE_CHARS} characters"
                ),
                errors: Vec::new(),
            });
        }
        if value.chars().count() > MAX_QUERY_VALUE_CHARS {
            return Err(ApiError::bad_field(
                name.into_owned(),
                format!("must be at most {MAX_QUERY_VALUE_CHARS} characters"),
            ));
        }
        // No text column can hold a NUL, and nothing Berth names contains one.
        if value.contains('\0') {
            return Err(ApiError::bad_field(
                name.into_owned(),
                "must not contain a NUL character",
            ));
        }
        if name.contains('\0') {
            return Err(ApiError::BadRequest {
                detail: "a query parameter name contains a NUL character".into(),
                errors: Vec::new(),
            });
        }
    }
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        field_error(&path, &message)
    })
}

/// Answers malformed path segments (e.g. an id that is not a UUID) with a problem.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| {
        ApiError::bad_field("id", format!("is not valid in this path: {err}")).into()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Count {
        n: u32,
    }

    #[test]
    fn whole_numbers_written_with_a_fraction_are_numbers_and_duplicates_are_refused() {
        assert_eq!(
            parse_json::<Count>(br#"{"n": 80.0}"#).map(|c| c.n).ok(),
            Some(80)
        );
        assert_eq!(
            parse_json::<Count>(br#"{"n": 80}"#).map(|c| c.n).ok(),
            Some(80)
        );
        assert!(parse_json::<Count>(br#"{"n": 80.5}"#).is_err());
        assert!(parse_json::<Count>(br#"{"n": 1, "n": 2}"#).is_err());
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        map: BTreeMap<String, u8>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
    }

    fn fields(err: ApiError) -> (u16, Vec<String>) {
        let problem = err.problem();
        (
            problem.status,
            problem.errors.into_iter().map(|f| f.field).collect(),
        )
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(fields(parse_json::<Body>(b"{").unwrap_err()), (400, vec![]));
        assert_eq!(
            fields(parse_json::<Body>(b"{\"name\":\"a\"} x").unwrap_err()),
            (400, vec![])
        );
        assert_eq!(
            fields(parse_json::<Body>(br#"{"name":5}"#).unwrap_err()),
            (400, vec!["name".into()])
        );
        assert_eq!(
            fields(parse_json::<Body>(br#"{"name":"a","inner":{"port":"x"}}"#).unwrap_err()),
            (400, vec!["inner.port".into()])
        );
        assert_eq!(
            fields(
                parse_json::<Body>(br#"{"name":"a","inner":{"port":1,"extra":1}}"#).unwrap_err()
            ),
            (400, vec!["inner.extra".into()])
        );
        assert_eq!(
            fields(parse_json::<Body>(br#"{"name":"a","map":{"K":"x"}}"#).unwrap_err()),
            (400, vec!["map.K".into()])
        );
        assert_eq!(
            fields(parse_json::<Body>(b"{}").unwrap_err()),
            (422, vec!["name".into()])
        );
    }

    #[test]
    fn deep_json_is_refused_before_parsing() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let (status, _) = fields(parse_json::<serde_json::Value>(deep(33).as_bytes()).unwrap_err());
        assert_eq!(status, 400);
        assert!(parse_json::<serde_json::Value>(deep(32).as_bytes()).is_ok());
        // Brackets inside strings do not count; neither do escaped quotes.
        let text = format!(r#"{{"name":"{}\"[["}}"#, "[".repeat(100));
        assert!(parse_json::<serde_json::Value>(text.as_bytes()).is_ok());
        let (status, _) =
            fields(parse_json::<serde_json::Value>("[".repeat(100_000).as_bytes()).unwrap_err());
        assert_eq!(status, 400);
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Params {
        page: Option<i64>,
        q: Option<String>,
    }

    #[test]
    fn query_errors_name_the_parameter() {
        assert!(parse_query::<Params>("page=2&q=a%20b").is_ok());
        assert_eq!(
            fields(parse_query::<Params>("page=x").unwrap_err()),
            (400, vec!["page".into()])
        );
        assert_eq!(
            fields(parse_query::<Params>("pgae=1").unwrap_err()),
            (400, vec!["pgae".into()])
        );
        let long = format!("q={}", "a".repeat(MAX_QUERY_VALUE_CHARS + 1));
        assert_eq!(
            fields(parse_query::<Params>(&long).unwrap_err()),
            (400, vec!["q".into()])
        );
        let many = vec!["page=1"; MAX_QUERY_PARAMS + 1].join("&");
        assert_eq!(fields(parse_query::<Params>(&many).unwrap_err()).0, 400);
    }
}
