//! The JSON-RPC 2.0 envelope: building requests and notifications, and sorting what a
//! server sends into answers, requests of its own, notifications and noise.

use serde_json::{json, Map, Value};

/// One message from the server, sorted.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Incoming {
    /// A response to one of our requests.
    Response {
        /// The request it answers.
        id: Value,
        /// Its `result`, or its `error` as words.
        outcome: Result<Value, String>,
    },
    /// A request from the server to us (`ping`, `roots/list`, …).
    Request {
        /// Its id, to answer it.
        id: Value,
        /// Its method.
        method: String,
    },
    /// A notification from the server (logging, progress, …).
    Notification,
    /// JSON that is not JSON-RPC 2.0, or not JSON at all.
    Noise,
}

/// A request with a numeric id.
pub(super) fn request(id: u64, method: &str, params: Option<Value>) -> Value {
    let mut message = Map::new();
    message.insert("jsonrpc".into(), "2.0".into());
    message.insert("id".into(), id.into());
    message.insert("method".into(), method.into());
    if let Some(params) = params {
        message.insert("params".into(), params);
    }
    Value::Object(message)
}

/// A notification (no id, no answer expected).
pub(super) fn notification(method: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": method})
}

/// Our answer to a request the server sent us: an empty result for `ping` (which the
/// specification lets either side send at any time), "method not found" for the rest,
/// as this client offers no capabilities.
pub(super) fn reply_to_server(id: Value, method: &str) -> Value {
    if method == "ping" {
        json!({"jsonrpc": "2.0", "id": id, "result": {}})
    } else {
        json!({"jsonrpc": "2.0", "id": id,
               "error": {"code": -32601, "message": format!("method not found: {method}")}})
    }
}

/// Sorts one parsed message.
pub(super) fn classify(message: &Value) -> Incoming {
    let Some(object) = message.as_object() else {
        return Incoming::Noise;
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Incoming::Noise;
    }
    match (object.get("method"), object.get("id")) {
        (Some(Value::String(method)), Some(id)) => Incoming::Request {
            id: id.clone(),
            method: method.clone(),
        },
        (Some(Value::String(_)), None) => Incoming::Notification,
        (None, Some(id)) => {
            let outcome = match (object.get("result"), object.get("error")) {
                (Some(result), None) => Ok(result.clone()),
                (None, Some(error)) => Err(describe_error(error)),
                _ => return Incoming::Noise,
            };
            Incoming::Response {
                id: id.clone(),
                outcome,
            }
        }
        _ => Incoming::Noise,
    }
}

/// Parses and sorts one line or event of text.
pub(super) fn classify_bytes(bytes: &[u8]) -> Incoming {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(message) => classify(&message),
        Err(_) => Incoming::Noise,
    }
}

fn describe_error(error: &Value) -> String {
    let code = error.get("code").and_then(Value::as_i64);
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("(no message)");
    match code {
        Some(code) => format!("JSON-RPC error {code}: {}", excerpt(message)),
        None => format!("JSON-RPC error: {}", excerpt(message)),
    }
}

/// The start of `text`, for error messages: long enough to recognise, short enough to
/// log.
pub(super) fn excerpt(text: &str) -> String {
    const LIMIT: usize = 200;
    let text = text.trim();
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_sorted() {
        let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"ok": true}});
        assert_eq!(
            classify(&answer),
            Incoming::Response {
                id: json!(1),
                outcome: Ok(json!({"ok": true}))
            }
        );
        let failure =
            json!({"jsonrpc": "2.0", "id": 2, "error": {"code": -32601, "message": "nope"}});
        assert_eq!(
            classify(&failure),
            Incoming::Response {
                id: json!(2),
                outcome: Err("JSON-RPC error -32601: nope".into())
            }
        );
        let ping = json!({"jsonrpc": "2.0", "id": "s1", "method": "ping"});
        assert_eq!(
            classify(&ping),
            Incoming::Request {
                id: json!("s1"),
                method: "ping".into()
            }
        );
        let log = json!({"jsonrpc": "2.0", "method": "notifications/message"});
        assert_eq!(classify(&log), Incoming::Notification);
        for noise in [
            json!({"id": 1, "result": {}}),
            json!([1, 2]),
            json!({"level": "info"}),
        ] {
            assert_eq!(classify(&noise), Incoming::Noise, "{noise}");
        }
        assert_eq!(classify_bytes(b"Server started on stdio"), Incoming::Noise);
    }

    #[test]
    fn excerpts_are_bounded() {
        assert_eq!(excerpt("  short  "), "short");
        let long = "é".repeat(500);
        assert_eq!(excerpt(&long).chars().count(), 201);
    }
}
