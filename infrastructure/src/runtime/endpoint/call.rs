//! One tool call of a registered API as the HTTP request it stands for, and the answer
//! as the tool's result.

use std::collections::BTreeMap;

use berth_domain::catalog::openapi::{ApiAuth, ApiOperation, ParameterLocation};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, RequestBuilder, Response};
use secrecy::SecretString;
use serde_json::{Map, Value};

use super::credential::Credential;

/// What a path segment keeps as it is (RFC 3986's unreserved characters).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a call could not be sent, or its answer not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// An argument is missing or cannot be sent as it is.
    #[error("argument `{name}`: {reason}")]
    Argument {
        /// The argument.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The server's credential is not configured.
    #[error("the server has no value for `{0}`, which the API's authentication needs")]
    Credential(String),
    /// The answer was larger than allowed.
    #[error("the API answered more than {0} bytes")]
    TooLarge(usize),
    /// The request failed (connection, timeout, refused address).
    #[error("{0}")]
    Transport(String),
}

/// The request for calling `operation` with `arguments`, authenticated from `config`.
pub fn request(
    client: &Client,
    base_url: &str,
    operation: &ApiOperation,
    auth: &ApiAuth,
    config: &BTreeMap<String, SecretString>,
    arguments: &Map<String, Value>,
) -> Result<RequestBuilder, CallError> {
    let mut path = operation.path.clone();
    let mut query: Vec<(String, String)> = Vec::new();
    let mut headers: Vec<(String, String)> = Vec::new();
    for parameter in &operation.parameters {
        let Some(value) = arguments.get(&parameter.name).filter(|v| !v.is_null()) else {
            if parameter.required {
                return Err(CallError::Argument {
                    name: parameter.name.clone(),
                    reason: "is required".into(),
                });
            }
            continue;
        };
        match parameter.location {
            ParameterLocation::Path => {
                let text = scalar(&parameter.name, value)?;
                // `.` and `..` are path steps, even encoded: `/users/../admin` is `/admin`.
                if matches!(text.as_str(), "" | "." | "..") {
                    return Err(CallError::Argument {
                        name: parameter.name.clone(),
                        reason: "must not be empty, `.` or `..`".into(),
                    });
                }
                let encoded = utf8_percent_encode(&text, PATH_SEGMENT).to_string();
                path = path.replace(&format!("{{{}}}", parameter.name), &encoded);
            }
            ParameterLocation::Query => match value {
                // An array is sent as the parameter repeated (OpenAPI's default, `form`
                // with `explode`).
                Value::Array(items) => {
                    for item in items {
                        query.push((parameter.name.clone(), scalar(&parameter.name, item)?));
                    }
                }
                _ => query.push((parameter.name.clone(), scalar(&parameter.name, value)?)),
            },
            ParameterLocation::Header => {
                headers.push((parameter.name.clone(), scalar(&parameter.name, value)?));
            }
        }
    }
    if let Some(body) = &operation.body {
        let given = arguments.get(body).is_some_and(|v| !v.is_null());
        let required = operation.input_schema["required"]
            .as_array()
            .is_some_and(|names| names.iter().any(|n| n == body.as_str()));
        if required && !given {
            return Err(CallError::Argument {
                name: body.clone(),
                reason: "is required (the request body)".into(),
            });
        }
    }
    let url = same_origin(
        base_url,
        &format!("{}{path}", base_url.trim_end_matches('/')),
    )?;
    let method =
        Method::from_bytes(operation.method.as_bytes()).map_err(|_| CallError::Argument {
            name: "method".into(),
            reason: format!("`{}` is not an HTTP method", operation.method),
        })?;
    let mut header_map = HeaderMap::new();
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .ok()
            .zip(HeaderValue::from_str(&value).ok())
            .ok_or_else(|| CallError::Argument {
                name: name.clone(),
                reason: "cannot be sent as a header".into(),
            })?;
        header_map.append(header.0, header.1);
    }
    // The credential goes last and replaces whatever a caller put under its name.
    let credential = Credential::of(auth, config)?;
    if let Some((name, value)) = credential.header {
        header_map.insert(name, value);
    }
    if let Some((name, value)) = credential.query {
        query.retain(|(n, _)| *n != name);
        query.push((name, value));
    }
    let mut request = client.request(method, url).headers(header_map);
    if !query.is_empty() {
        request = request.query(&query);
    }
    if let Some(body) = operation.body.as_ref().and_then(|name| arguments.get(name)) {
        request = request.json(body);
    }
    Ok(request)
}

/// `url` if it goes where `base_url` does (scheme, host and port): a path of the
/// document must not move the request, and its credential, to another host.
fn same_origin(base_url: &str, url: &str) -> Result<reqwest::Url, CallError> {
    let parse = |u: &str| {
        reqwest::Url::parse(u).map_err(|e| CallError::Transport(format!("not a URL: {e}")))
    };
    let (base, target) = (parse(base_url)?, parse(url)?);
    if base.origin() != target.origin() {
        return Err(CallError::Transport(
            "the operation's path would leave the API's host".into(),
        ));
    }
    Ok(target)
}

/// A scalar argument as the text the request carries.
fn scalar(name: &str, value: &Value) -> Result<String, CallError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(CallError::Argument {
            name: name.to_owned(),
            reason: "must be a string, a number or a boolean here".into(),
        }),
    }
}

/// What the API answered, as a tool result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The body as text (JSON as the API sent it).
    pub text: String,
    /// Not a 2xx: the call's result says `isError`.
    pub is_error: bool,
}

/// Reads `response`, at most `max_bytes` of body.
pub async fn answer(mut response: Response, max_bytes: usize) -> Result<ApiAnswer, CallError> {
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| CallError::Transport(e.to_string()))?
    {
        if body.len() + chunk.len() > max_bytes {
            return Err(CallError::TooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let is_error = !status.is_success();
    let text = if is_error {
        format!(
            "HTTP {} {}\n{text}",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default()
        )
    } else {
        text
    };
    Ok(ApiAnswer {
        status: status.as_u16(),
        text,
        is_error,
    })
}

#[cfg(test)]
mod tests {
    use berth_domain::catalog::openapi::ApiParameter;
    use serde_json::json;

    use super::*;

    fn operation() -> ApiOperation {
        ApiOperation {
            tool: "updatePet".into(),
            method: "PUT".into(),
            path: "/pet/{petId}/tags".into(),
            description: String::new(),
            input_schema: json!({}),
            parameters: vec![
                ApiParameter {
                    name: "petId".into(),
                    location: ParameterLocation::Path,
                    required: true,
                },
                ApiParameter {
                    name: "status".into(),
                    location: ParameterLocation::Query,
                    required: false,
                },
                ApiParameter {
                    name: "X-Trace".into(),
                    location: ParameterLocation::Header,
                    required: false,
                },
            ],
            body: Some("body".into()),
        }
    }

    fn config() -> BTreeMap<String, SecretString> {
        BTreeMap::from([("KEY".to_owned(), SecretString::from("s3cret".to_owned()))])
    }

    /// The request for `operation` with `arguments` (an object) on `base`.
    fn prepare(
        base: &str,
        operation: &ApiOperation,
        auth: &ApiAuth,
        arguments: &Value,
    ) -> Result<RequestBuilder, CallError> {
        let none = Map::new();
        request(
            &Client::new(),
            base,
            operation,
            auth,
            &config(),
            arguments.as_object().unwrap_or(&none),
        )
    }

    #[test]
    fn arguments_go_to_the_path_query_headers_and_body_with_the_credential() {
        let arguments = json!({
            "petId": "a b/../c",
            "status": ["sold", "pending"],
            "X-Trace": 7,
            "body": {"name": "rex"}
        });
        let auth = ApiAuth::Query {
            name: "api_key".into(),
            secret: "KEY".into(),
        };
        let request = prepare("http://api.test/v3/", &operation(), &auth, &arguments)
            .expect("a request")
            .build()
            .expect("it builds");
        assert_eq!(request.method(), Method::PUT);
        assert_eq!(
            request.url().as_str(),
            "http://api.test/v3/pet/a%20b%2F..%2Fc/tags?status=sold&status=pending&api_key=s3cret"
        );
        assert_eq!(request.headers()["X-Trace"], "7");
        let body = request.body().and_then(|b| b.as_bytes()).expect("a body");
        assert_eq!(
            serde_json::from_slice::<Value>(body).ok(),
            Some(json!({"name": "rex"}))
        );
    }

    #[test]
    fn a_request_never_leaves_the_apis_host_nor_climbs_out_of_its_path() {
        let mut op = operation();
        op.path = "@127.0.0.1:5432/x".into();
        let arguments = json!({"petId": 1});
        let moved = prepare("http://api.test", &op, &ApiAuth::None, &arguments);
        assert!(matches!(moved, Err(CallError::Transport(_))));
        for value in ["..", ".", ""] {
            let arguments = json!({"petId": value});
            let climbed = prepare("http://api.test", &operation(), &ApiAuth::None, &arguments);
            assert!(
                matches!(climbed, Err(CallError::Argument { .. })),
                "{value:?}"
            );
        }
    }

    #[test]
    fn the_credential_replaces_a_callers_value_of_the_same_name() {
        let mut op = operation();
        op.parameters[2].name = "X-Key".into();
        let arguments = json!({"petId": 1, "X-Key": "mine", "status": "sold"});
        let auth = ApiAuth::Header {
            name: "x-key".into(),
            secret: "KEY".into(),
        };
        let sent = prepare("http://api.test", &op, &auth, &arguments)
            .expect("a request")
            .build()
            .expect("it builds");
        let values: Vec<_> = sent.headers().get_all("x-key").iter().collect();
        assert_eq!(values, ["s3cret"]);
        let query = ApiAuth::Query {
            name: "status".into(),
            secret: "KEY".into(),
        };
        let sent = prepare("http://api.test", &operation(), &query, &arguments)
            .expect("a request")
            .build()
            .expect("it builds");
        assert_eq!(sent.url().query(), Some("status=s3cret"));
    }

    #[test]
    fn a_missing_argument_or_credential_is_said_before_anything_is_sent() {
        let missing = prepare("http://api.test", &operation(), &ApiAuth::None, &json!({}));
        assert_eq!(
            missing.err(),
            Some(CallError::Argument {
                name: "petId".into(),
                reason: "is required".into()
            })
        );
        let arguments = json!({"petId": 1});
        let bearer = ApiAuth::Bearer {
            secret: "OTHER".into(),
        };
        let unset = prepare("http://api.test", &operation(), &bearer, &arguments);
        assert_eq!(unset.err(), Some(CallError::Credential("OTHER".into())));
        let object_in_path = json!({"petId": {"a": 1}});
        let refused = prepare(
            "http://api.test",
            &operation(),
            &ApiAuth::None,
            &object_in_path,
        );
        assert!(matches!(refused, Err(CallError::Argument { .. })));
        // A required body, missing or null.
        let mut op = operation();
        op.input_schema = json!({"required": ["petId", "body"]});
        for arguments in [json!({"petId": 1}), json!({"petId": 1, "body": null})] {
            let refused = prepare("http://api.test", &op, &ApiAuth::None, &arguments);
            assert_eq!(
                refused.err(),
                Some(CallError::Argument {
                    name: "body".into(),
                    reason: "is required (the request body)".into()
                })
            );
        }
        let sent = prepare(
            "http://api.test",
            &op,
            &ApiAuth::None,
            &json!({"petId": 1, "body": {"tags": []}}),
        );
        assert!(sent.is_ok());
    }
}
