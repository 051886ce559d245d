//! Registered HTTP APIs: what an OpenAPI 3.0 or 3.1 document offers as MCP tools.
//!
//! The document is checked with the `oas3` crate (it must deserialize as an OpenAPI
//! description; a 3.0 document is first brought to 3.1's form, see [`normalize`]), then
//! each chosen operation becomes one tool: its name from `operationId` (else method and
//! path), its description from the summary and description, and its input schema from
//! the path, query and header parameters and the JSON request body, with every `$ref`
//! within the document inlined ([`schema`]). What cannot become a tool is refused with
//! the document path and the reason.

mod normalize;
mod schema;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::validation::FieldError;

/// Operations offered when an entry lists none: every `GET`, up to this many.
pub const MAX_DEFAULT_TOOLS: usize = 100;

/// The most operations one entry may offer.
pub const MAX_TOOLS: usize = 300;

/// The field of a catalog definition the document is in, for error paths.
const DOCUMENT: &str = "runtime.document";

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// How a registered API's requests authenticate. The credential is a config key of
/// each server (a secret, but for basic's user name), never part of the entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ApiAuth {
    /// No credential.
    #[default]
    None,
    /// A header carrying the secret, e.g. `X-API-Key`.
    Header {
        /// The header's name.
        name: String,
        /// The secret config key holding its value.
        secret: String,
    },
    /// A query parameter carrying the secret, e.g. `api_key`.
    Query {
        /// The parameter's name.
        name: String,
        /// The secret config key holding its value.
        secret: String,
    },
    /// `Authorization: Bearer <secret>`.
    Bearer {
        /// The secret config key holding the token.
        secret: String,
    },
    /// `Authorization: Basic`, from a user name and a password.
    Basic {
        /// The config key holding the user name.
        username: String,
        /// The secret config key holding the password.
        password: String,
    },
}

impl ApiAuth {
    /// No credential at all.
    pub fn is_none(&self) -> bool {
        *self == Self::None
    }

    /// The config keys it reads: `(field, key, whether the key must be secret)`.
    pub fn keys(&self) -> Vec<(&'static str, &str, bool)> {
        match self {
            Self::None => Vec::new(),
            Self::Header { secret, .. } | Self::Query { secret, .. } => {
                vec![("runtime.auth.secret", secret.as_str(), true)]
            }
            Self::Bearer { secret } => vec![("runtime.auth.secret", secret.as_str(), true)],
            Self::Basic { username, password } => vec![
                ("runtime.auth.username", username.as_str(), false),
                ("runtime.auth.password", password.as_str(), true),
            ],
        }
    }

    /// The header or parameter name must be a plain token, and not a header HTTP or
    /// Berth reserves.
    pub fn check_names(&self) -> Result<(), Vec<(&'static str, &'static str)>> {
        match self {
            Self::Header { name, .. } if is_reserved_header(name) => Err(vec![(
                "runtime.auth.name",
                "is a header HTTP reserves (use `bearer` or `basic` for `Authorization`)",
            )]),
            Self::Header { name, .. } | Self::Query { name, .. }
                if name.is_empty()
                    || name.len() > 128
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
            {
                Err(vec![(
                    "runtime.auth.name",
                    "must be 1 to 128 letters, digits, '-', '_' or '.'",
                )])
            }
            _ => Ok(()),
        }
    }
}

/// Where a parameter goes in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParameterLocation {
    /// In the path, replacing `{name}`.
    Path,
    /// In the query string.
    Query,
    /// As a request header.
    Header,
}

/// One parameter of an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiParameter {
    /// Its name, in the request and in the tool's arguments.
    pub name: String,
    /// Where it goes.
    pub location: ParameterLocation,
    /// Whether the operation needs it.
    pub required: bool,
}

/// One operation of a registered API, as the tool that calls it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiOperation {
    /// The tool's name.
    pub tool: String,
    /// The HTTP method, upper case.
    pub method: String,
    /// The path template, e.g. `/pet/{petId}`.
    pub path: String,
    /// What the tool does.
    pub description: String,
    /// The JSON Schema of the tool's arguments.
    pub input_schema: Value,
    /// Its parameters.
    pub parameters: Vec<ApiParameter>,
    /// The argument holding the JSON request body, if it takes one.
    pub body: Option<String>,
}

/// The operations of `document` that become tools: those `chosen` names (an
/// `operationId`, or `METHOD /path`), or every `GET` when none is named.
pub fn operations(
    document: &Value,
    chosen: &[String],
) -> Result<Vec<ApiOperation>, Vec<FieldError>> {
    let document = normalize::to_3_1(document);
    check_structure(&document)?;
    let mut all = Vec::new();
    let mut errors = Vec::new();
    let paths = document["paths"].as_object().cloned().unwrap_or_default();
    for (path, item) in &paths {
        let at = format!("{DOCUMENT}.paths.{path}");
        // A path is appended to the base URL: one not starting with `/` (`@host/…`,
        // `.other.example/…`) would send the request, and its credential, elsewhere.
        if !path.starts_with('/') || path.starts_with("//") || path.contains(['\\', '#', '?']) {
            errors.push(FieldError::new(
                at,
                "a path must start with a single `/` and hold no `\\`, `?` or `#`",
            ));
            continue;
        }
        let item = match schema::resolve(&document, item) {
            Ok(item) => item,
            Err(reason) => {
                errors.push(FieldError::new(at, reason));
                continue;
            }
        };
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                all.push(Candidate {
                    at: format!("{at}.{method}"),
                    path: path.clone(),
                    method,
                    operation: operation.clone(),
                    shared: item.get("parameters").cloned(),
                });
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let selected = select(&all, chosen)?;
    let mut tools = Vec::new();
    let mut names = BTreeSet::new();
    for (field, candidate) in selected {
        match candidate.tool(&document) {
            Ok(tool) if !names.insert(tool.tool.clone()) => errors.push(FieldError::new(
                field,
                format!("two operations would both be the tool `{}`", tool.tool),
            )),
            Ok(tool) => tools.push(tool),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(tools)
    } else {
        Err(errors)
    }
}

/// The document must be an OpenAPI description `oas3` reads.
fn check_structure(document: &Value) -> Result<(), Vec<FieldError>> {
    let version = document["openapi"].as_str().unwrap_or_default();
    if !(version.starts_with("3.0.") || version.starts_with("3.1.")) {
        return Err(vec![FieldError::new(
            format!("{DOCUMENT}.openapi"),
            "must be an OpenAPI 3.0 or 3.1 document (`openapi: 3.0.x` or `3.1.x`)",
        )]);
    }
    serde_path_to_error::deserialize::<_, oas3::Spec>(document)
        .map(|_| ())
        .map_err(|e| {
            let at = e.path().to_string();
            let field = if at == "." {
                DOCUMENT.to_owned()
            } else {
                format!("{DOCUMENT}.{at}")
            };
            vec![FieldError::new(
                field,
                format!("is not valid OpenAPI: {}", e.inner()),
            )]
        })?;
    if !document["paths"].is_object() {
        return Err(vec![FieldError::new(
            format!("{DOCUMENT}.paths"),
            "must list the API's operations",
        )]);
    }
    Ok(())
}

/// One operation of the document.
struct Candidate {
    at: String,
    path: String,
    method: &'static str,
    operation: Value,
    /// The parameters of its path item.
    shared: Option<Value>,
}

impl Candidate {
    fn operation_id(&self) -> Option<&str> {
        self.operation["operationId"].as_str()
    }

    fn label(&self) -> String {
        format!("{} {}", self.method.to_ascii_uppercase(), self.path)
    }

    fn tool(&self, document: &Value) -> Result<ApiOperation, FieldError> {
        let name = tool_name(self.operation_id(), self.method, &self.path);
        let mut properties = Map::new();
        let mut required = Vec::new();
        let mut parameters: Vec<ApiParameter> = Vec::new();
        // Which parameters came from the path item: an operation's own parameter of the
        // same name replaces one of those.
        let mut shared_names = BTreeSet::new();
        for (list_at, list, shared) in [
            (
                format!("{DOCUMENT}.paths.{}.parameters", self.path),
                self.shared.as_ref(),
                true,
            ),
            (
                format!("{}.parameters", self.at),
                self.operation.get("parameters"),
                false,
            ),
        ] {
            for (i, parameter) in list
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let at = format!("{list_at}[{i}]");
                let parameter = schema::resolve(document, parameter)
                    .map_err(|reason| FieldError::new(&at, reason))?;
                let (name, location, is_required, property) = parameter_of(document, &parameter)
                    .map_err(|reason| FieldError::new(&at, reason))?;
                if properties.contains_key(&name) {
                    if shared || !shared_names.remove(&name) {
                        return Err(FieldError::new(
                            at,
                            format!("two parameters are named `{name}`; a tool's arguments are named by parameter"),
                        ));
                    }
                    parameters.retain(|p| p.name != name);
                    required.retain(|r| r != &name);
                } else if shared {
                    shared_names.insert(name.clone());
                }
                if is_required {
                    required.push(name.clone());
                }
                properties.insert(name.clone(), property);
                parameters.push(ApiParameter {
                    name,
                    location,
                    required: is_required,
                });
            }
        }
        let body = match self.body(document)? {
            Some((schema, is_required)) => {
                let name = if properties.contains_key("body") {
                    "request_body"
                } else {
                    "body"
                };
                if is_required {
                    required.push(name.to_owned());
                }
                properties.insert(name.to_owned(), schema);
                Some(name.to_owned())
            }
            None => None,
        };
        let mut input_schema =
            json!({"type": "object", "properties": properties, "additionalProperties": false});
        if !required.is_empty() {
            input_schema["required"] = json!(required);
        }
        Ok(ApiOperation {
            tool: name,
            method: self.method.to_ascii_uppercase(),
            path: self.path.clone(),
            description: self.description(),
            input_schema,
            parameters,
            body,
        })
    }

    fn description(&self) -> String {
        let said: Vec<&str> = ["summary", "description"]
            .iter()
            .filter_map(|k| self.operation[*k].as_str())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        let mut text = format!("{}: {}", self.label(), said.join(" — "));
        if said.is_empty() {
            text.truncate(text.len() - 2);
        }
        text.chars().take(2048).collect()
    }

    /// The JSON request body's schema and whether it is required.
    fn body(&self, document: &Value) -> Result<Option<(Value, bool)>, FieldError> {
        let Some(body) = self.operation.get("requestBody") else {
            return Ok(None);
        };
        let at = format!("{}.requestBody", self.at);
        let body =
            schema::resolve(document, body).map_err(|reason| FieldError::new(&at, reason))?;
        let required = body["required"].as_bool().unwrap_or(false);
        let content = body["content"].as_object().cloned().unwrap_or_default();
        let json = content
            .iter()
            .find(|(media, _)| media.as_str() == "application/json" || media.ends_with("+json"));
        match json {
            Some((media, media_type)) => {
                let schema = schema::inline(document, &media_type["schema"]).map_err(|reason| {
                    FieldError::new(format!("{at}.content.{media}.schema"), reason)
                })?;
                Ok(Some((schema, required)))
            }
            None if required => Err(FieldError::new(
                format!("{at}.content"),
                format!(
                    "only JSON request bodies can become tool arguments; this one takes {}",
                    content.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )),
            None => Ok(None),
        }
    }
}

/// A parameter's name, location, whether it is required, and its argument schema.
fn parameter_of(
    document: &Value,
    parameter: &Value,
) -> Result<(String, ParameterLocation, bool, Value), String> {
    let name = parameter["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or("a parameter needs a name")?
        .to_owned();
    let location = match parameter["in"].as_str() {
        Some("path") => ParameterLocation::Path,
        Some("query") => ParameterLocation::Query,
        Some("header") if is_reserved_header(&name) => {
            return Err(format!(
                "`{name}` is a header Berth sets itself (or HTTP reserves); it cannot be a tool argument"
            ))
        }
        Some("header") => ParameterLocation::Header,
        Some("cookie") => {
            return Err(format!(
                "`{name}` is a cookie parameter, which Berth does not send"
            ))
        }
        _ => return Err(format!("`{name}` must say where it goes (`in`)")),
    };
    let required =
        location == ParameterLocation::Path || parameter["required"].as_bool().unwrap_or(false);
    let mut property = match parameter.get("schema") {
        Some(s) => schema::inline(document, s)?,
        None => json!({"type": "string"}),
    };
    if let (Some(text), Some(object)) =
        (parameter["description"].as_str(), property.as_object_mut())
    {
        object.entry("description").or_insert_with(|| json!(text));
    }
    Ok((name, location, required, property))
}

/// The chosen operations, each with the field that chose it.
fn select<'a>(
    all: &'a [Candidate],
    chosen: &[String],
) -> Result<Vec<(String, &'a Candidate)>, Vec<FieldError>> {
    if chosen.is_empty() {
        let gets: Vec<_> = all
            .iter()
            .filter(|c| c.method == "get")
            .map(|c| (c.at.clone(), c))
            .collect();
        if gets.len() > MAX_DEFAULT_TOOLS {
            return Err(vec![FieldError::new(
                "runtime.operations",
                format!(
                    "the document has {} GET operations; list the ones to offer (at most {MAX_TOOLS})",
                    gets.len()
                ),
            )]);
        }
        return Ok(gets);
    }
    if chosen.len() > MAX_TOOLS {
        return Err(vec![FieldError::new(
            "runtime.operations",
            format!("must name at most {MAX_TOOLS} operations"),
        )]);
    }
    let mut errors = Vec::new();
    let mut selected = Vec::new();
    for (i, name) in chosen.iter().enumerate() {
        let field = format!("runtime.operations[{i}]");
        let found = all.iter().find(|c| {
            c.operation_id() == Some(name.as_str()) || c.label().eq_ignore_ascii_case(name.trim())
        });
        match found {
            Some(c)
                if selected
                    .iter()
                    .any(|(_, s): &(String, &Candidate)| std::ptr::eq(*s, c)) =>
            {
                errors.push(FieldError::new(field, format!("`{name}` is listed twice")));
            }
            Some(c) => selected.push((field, c)),
            None => errors.push(FieldError::new(
                field,
                format!(
                    "no operation of the document has the operationId or `METHOD /path` `{name}`"
                ),
            )),
        }
    }
    if errors.is_empty() {
        Ok(selected)
    } else {
        Err(errors)
    }
}

/// Headers a caller (or a credential) must not choose: routing (`Host`), credentials,
/// framing and body metadata, cookies and proxy hops, and those the MCP transport sets
/// itself (`Accept`, `Last-Event-ID`, `Mcp-*`).
fn is_reserved_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "host"
            | "authorization"
            | "cookie"
            | "connection"
            | "transfer-encoding"
            | "te"
            | "upgrade"
            | "expect"
            | "keep-alive"
            | "trailer"
            | "accept"
            | "last-event-id"
    ) || name.starts_with("content-")
        || name.starts_with("proxy-")
        || name.starts_with("mcp-")
}

/// A tool name from `operationId`, else from the method and path: letters, digits, `_`
/// and `-`, at most 64 characters.
fn tool_name(operation_id: Option<&str>, method: &str, path: &str) -> String {
    let raw = match operation_id {
        Some(id) if !id.trim().is_empty() => id.trim().to_owned(),
        _ => format!("{method}_{path}"),
    };
    let mut name = String::new();
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '_'
        };
        if !(c == '_' && (name.is_empty() || name.ends_with('_'))) {
            name.push(c);
        }
    }
    let name: String = name.trim_end_matches('_').chars().take(64).collect();
    if name.is_empty() {
        // An operationId of punctuation only: the method and path name it.
        return tool_name(None, method, path);
    }
    name
}

#[cfg(test)]
mod tests;
