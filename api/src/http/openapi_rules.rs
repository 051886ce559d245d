//! What every route of the API shares, written into the OpenAPI document in one place
//! rather than on each handler, so the document cannot forget it for one route:
//!
//! - every `/api/v1` operation may answer `401` (no or bad credential) and `429` (rate
//!   limit, with `Retry-After`);
//! - an operation with parameters or a body may answer `400` (malformed id, parameter or
//!   body), one that accepts `min_position` also `422` (beyond the newest event) and `503`
//!   (its read model did not get there in time);
//! - the query parameters that mean the same everywhere are bounded the same everywhere:
//!   `page` from 1, `page_size` 1–500, `min_position` and `after` from 0, and every text
//!   parameter at most 256 characters with no NUL, as [`crate::http::extract`] enforces;
//! - a server-sent event stream is described as its messages (`id`, `event`, `data`).

use serde_json::{json, Map, Value};

use crate::http::extract::MAX_QUERY_VALUE_CHARS;
use crate::http::pagination::MAX_PAGE_SIZE;
use crate::http::routes::bulk::IDEMPOTENCY_KEY;
use crate::http::routes::API_PREFIX;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Completes `document` (an OpenAPI 3.1 document as JSON) with the shared rules.
pub fn complete(document: &mut Value) {
    close_request_variants(document);
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            if let Some(operation) = item.get_mut(method) {
                complete_operation(path.starts_with(API_PREFIX), operation);
            }
        }
    }
}

fn complete_operation(authenticated: bool, operation: &mut Value) {
    let parameters = operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let names: Vec<String> = parameters
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    let bounded: Vec<Value> = parameters.into_iter().map(bound_parameter).collect();
    let has_input = !bounded.is_empty() || operation.get("requestBody").is_some();
    if !bounded.is_empty() {
        operation["parameters"] = Value::Array(bounded);
    }
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for content in responses.values_mut().filter_map(|r| r.get_mut("content")) {
        if let Some(stream) = content.get_mut("text/event-stream") {
            stream["schema"] = sse_message();
        }
    }
    if authenticated {
        add(responses, "401", "No or bad credential", None);
        add(
            responses,
            "429",
            "The credential is over its rate limit",
            Some(retry_after("Seconds until a request may succeed")),
        );
    }
    if has_input {
        add(
            responses,
            "400",
            "Malformed path id, parameter, header or body (the problem names it)",
            None,
        );
    }
    if names.iter().any(|n| n == "min_position") {
        add(
            responses,
            "422",
            "A parameter out of range (e.g. `min_position` beyond the newest event)",
            None,
        );
        add(
            responses,
            "503",
            "The read model did not reach `min_position` in time, or the database is unavailable",
            Some(retry_after("Seconds to wait before retrying")),
        );
    }
}

/// Request bodies refuse unknown fields (`deny_unknown_fields`); the generator says so
/// for structs but not for the variants of tagged enums (`RestartPolicyBody`), which it
/// is told here. Only request types are named `…Body` or `…Dto`. Variants that share a
/// field besides the tag (`RuntimeSpecDto`: `command` is a list for `docker`, a string
/// for `process`) stay open: closed, no schema-driven generator can build instances of
/// them, and the document would stop being testable.
fn close_request_variants(document: &mut Value) {
    let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (name, schema) in schemas.iter_mut() {
        if !(name.ends_with("Body") || name.ends_with("Dto")) {
            continue;
        }
        if let Some(variants) = schema.get_mut("oneOf").and_then(Value::as_array_mut) {
            if variants_share_fields(variants) {
                continue;
            }
            for variant in variants
                .iter_mut()
                .filter(|v| v.get("properties").is_some())
            {
                variant["additionalProperties"] = json!(false);
            }
        }
    }
}

/// Whether two variants have a property of the same name other than the tag `type`.
fn variants_share_fields(variants: &[Value]) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    for variant in variants {
        let Some(properties) = variant.get("properties").and_then(Value::as_object) else {
            continue;
        };
        for name in properties.keys().filter(|name| *name != "type") {
            if !seen.insert(name.clone()) {
                return true;
            }
        }
    }
    false
}

/// Adds a problem response for `status` unless the operation documents one already.
fn add(
    responses: &mut Map<String, Value>,
    status: &str,
    description: &str,
    headers: Option<Value>,
) {
    if responses.contains_key(status) {
        return;
    }
    let mut response = json!({
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }
    });
    if let Some(headers) = headers {
        response["headers"] = headers;
    }
    responses.insert(status.to_owned(), response);
}

fn retry_after(description: &str) -> Value {
    json!({"Retry-After": {"description": description, "schema": {"type": "integer", "minimum": 0}}})
}

/// One server-sent message as a client parses it.
fn sse_message() -> Value {
    json!({
        "type": "object",
        "description": "One server-sent message: an event of the log (`id` its position, `data` its JSON) or a final message (`event` names why the stream ends, `data` is `{\"type\", \"last_event_id\", \"detail\"}`)",
        "properties": {
            "id": {"type": "string"},
            "event": {"type": "string"},
            "data": {"type": "string"},
            "retry": {"type": "integer"}
        },
        "required": ["data"]
    })
}

/// The shared bounds of a parameter, by its name and type.
fn bound_parameter(mut parameter: Value) -> Value {
    let name = parameter["name"].as_str().unwrap_or_default().to_owned();
    let location = parameter["in"].as_str().unwrap_or_default().to_owned();
    let Some(schema) = parameter.get_mut("schema") else {
        return parameter;
    };
    if location == "header" {
        // A header is absent or has a value; it is never JSON null.
        if let Some(t) = schema_type(schema).map(str::to_owned) {
            schema["type"] = json!(t);
        }
    }
    if name == IDEMPOTENCY_KEY {
        schema["pattern"] = json!("^[!-~]{1,255}$");
    }
    let integer = schema_type(schema) == Some("integer");
    match name.as_str() {
        "page" if integer => set_bounds(schema, Some(1), None),
        "page_size" if integer => set_bounds(schema, Some(1), Some(MAX_PAGE_SIZE)),
        "min_position" | "after" | "Last-Event-ID" if integer => set_bounds(schema, Some(0), None),
        _ => {}
    }
    if location == "query"
        && schema_type(schema) == Some("string")
        && !schema_is_constrained(schema)
    {
        schema["maxLength"] = json!(MAX_QUERY_VALUE_CHARS);
        schema["pattern"] = json!("^[^\\u0000]*$");
    }
    parameter
}

/// `integer`, `string`, ... also for `["integer", "null"]`.
fn schema_type(schema: &Value) -> Option<&str> {
    match &schema["type"] {
        Value::String(t) => Some(t.as_str()),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null"),
        _ => None,
    }
}

/// Formats and enums say more than a length could.
fn schema_is_constrained(schema: &Value) -> bool {
    schema.get("format").is_some()
        || schema.get("enum").is_some()
        || schema.get("pattern").is_some()
}

fn set_bounds(schema: &mut Value, minimum: Option<i64>, maximum: Option<i64>) {
    if let Some(minimum) = minimum {
        schema["minimum"] = json!(minimum);
    }
    if let Some(maximum) = maximum {
        schema["maximum"] = json!(maximum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_responses_and_bounds_are_added_once() {
        let mut document = json!({"paths": {
            "/api/v1/things/{id}": {"get": {
                "parameters": [
                    {"name": "id", "in": "path", "schema": {"type": "string", "format": "uuid"}},
                    {"name": "page_size", "in": "query", "schema": {"type": ["integer", "null"]}},
                    {"name": "q", "in": "query", "schema": {"type": ["string", "null"]}},
                    {"name": "min_position", "in": "query", "schema": {"type": "integer"}}
                ],
                "responses": {"200": {"description": "ok"}, "401": {"description": "mine"}}
            }},
            "/healthz": {"get": {"responses": {"200": {"description": "ok"}}}}
        }});
        complete(&mut document);
        let op = &document["paths"]["/api/v1/things/{id}"]["get"];
        for status in ["400", "422", "429", "503"] {
            assert!(op["responses"][status].is_object(), "{status}");
        }
        assert_eq!(op["responses"]["401"]["description"], "mine");
        assert_eq!(op["parameters"][1]["schema"]["maximum"], 500);
        assert_eq!(op["parameters"][2]["schema"]["maxLength"], 256);
        assert!(op["parameters"][0]["schema"].get("maxLength").is_none());
        assert_eq!(op["parameters"][3]["schema"]["minimum"], 0);
        let health = &document["paths"]["/healthz"]["get"]["responses"];
        assert!(health.get("401").is_none() && health.get("400").is_none());
    }
}
