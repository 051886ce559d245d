//! What a catalog entry says about the MCP server it describes, and its validation.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::openapi::ApiAuth;
use crate::validation::{check_name, check_text, Violations, MAX_DESCRIPTION_LEN, MAX_VALUE_LEN};
use crate::FieldError;

/// How a client talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// JSON-RPC over the process's standard input and output.
    Stdio,
    /// Streamable HTTP on a port the server listens on.
    Http,
}

/// Whether an entry ships with Berth or was added through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogKind {
    /// Shipped with Berth and registered at start.
    Predefined,
    /// Added by a user.
    Custom,
}

/// How to run the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuntimeSpec {
    /// A container image run by the Docker runtime.
    Docker {
        /// Image reference, e.g. `ghcr.io/github/github-mcp-server:latest`.
        image: String,
        /// Overrides the image's command when not empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        command: Vec<String>,
        /// The port an `http` server listens on inside the container.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// A local command run by the process runtime (no shell is involved).
    Process {
        /// The program, e.g. `npx`.
        command: String,
        /// Its arguments, passed as they are.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
    },
    /// A registered HTTP API, served by Berth itself: each chosen operation of its
    /// OpenAPI document is a tool ([`super::openapi`]). Its servers run no container or
    /// process.
    #[serde(rename = "openapi")]
    OpenApi {
        /// The API's OpenAPI 3.0 or 3.1 document, as registered: stored in the entry's
        /// event, so it never changes behind anyone's back.
        document: serde_json::Value,
        /// Where its requests go, e.g. `https://api.example.com/v1`.
        base_url: String,
        /// How its requests authenticate; the credential is a secret of each server.
        #[serde(default, skip_serializing_if = "ApiAuth::is_none")]
        auth: ApiAuth,
        /// The path a `GET` of which must answer (below 500) for a server to be `running`.
        #[serde(default = "default_health_path")]
        health_path: String,
        /// The operations offered as tools (`operationId` or `METHOD /path`); every `GET`
        /// when empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        operations: Vec<String>,
    },
    /// An MCP server someone else runs, reached at its URL over Streamable HTTP. Its
    /// servers run nothing: `running` means the MCP handshake at the URL succeeded.
    Remote {
        /// Its MCP endpoint, e.g. `https://mcp.example.com/mcp`.
        url: String,
        /// How its requests authenticate; the credential is a secret of each server.
        #[serde(default, skip_serializing_if = "ApiAuth::is_none")]
        auth: ApiAuth,
    },
}

fn default_health_path() -> String {
    "/".to_owned()
}

/// Which runtime runs an entry's servers: the `type` of its [`RuntimeSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// Docker containers.
    Docker,
    /// Local processes.
    Process,
    /// Registered HTTP APIs, served by Berth itself.
    #[serde(rename = "openapi")]
    OpenApi,
    /// MCP servers someone else runs, reached at their URL.
    Remote,
}

impl RuntimeKind {
    /// Its name in the API (`docker`, `process`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Process => "process",
            Self::OpenApi => "openapi",
            Self::Remote => "remote",
        }
    }

    /// Whether what runs a server of it outlives Berth: a container does; a local
    /// process, or what Berth keeps in memory for a registered API or a remote server,
    /// ends with it.
    pub fn outlives_berth(self) -> bool {
        match self {
            Self::Docker => true,
            Self::Process | Self::OpenApi | Self::Remote => false,
        }
    }
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RuntimeSpec {
    /// The runtime that runs it.
    pub fn kind(&self) -> RuntimeKind {
        match self {
            Self::Docker { .. } => RuntimeKind::Docker,
            Self::Process { .. } => RuntimeKind::Process,
            Self::OpenApi { .. } => RuntimeKind::OpenApi,
            Self::Remote { .. } => RuntimeKind::Remote,
        }
    }
}

/// One configuration key a server of this kind takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigKey {
    /// The key, also the environment variable the server sees.
    pub key: String,
    /// What the key means.
    #[serde(default)]
    pub description: String,
    /// A server cannot be created without it (unless it has a default).
    #[serde(default)]
    pub required: bool,
    /// Its value is sealed and never shown.
    #[serde(default)]
    pub secret: bool,
    /// Value used when none is given. Secrets have no default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// Limits applied to each running server of this kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory limit in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// CPU limit in cores (e.g. 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
}

/// Everything a catalog entry says, as registered or updated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogDefinition {
    /// Short unique-ish name, e.g. `github`.
    pub name: String,
    /// What the server does.
    #[serde(default)]
    pub description: String,
    /// How clients talk to it.
    pub transport: Transport,
    /// How it is run.
    pub runtime: RuntimeSpec,
    /// The keys its configuration takes.
    #[serde(default)]
    pub config_schema: Vec<ConfigKey>,
    /// Resource limits.
    #[serde(default)]
    pub resources: Resources,
    /// How the MCP gateway treats its servers.
    #[serde(default, skip_serializing_if = "GatewaySettings::is_default")]
    pub gateway: GatewaySettings,
}

/// The longest a gateway call may be allowed to take.
pub const MAX_CALL_TIMEOUT_SECS: u32 = 3600;

/// How the MCP gateway treats an entry's servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// How long one tool call may take, in seconds (1 to 3600; the gateway's default,
    /// 60 s, when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_timeout_secs: Option<u32>,
    /// Keep each call's arguments, sealed under the caller's data key (so forgetting the
    /// caller shreds them); only their digest and size otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_arguments: bool,
}

impl GatewaySettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

const MAX_SCHEMA_KEYS: usize = 100;
const MAX_ARGS: usize = 64;
const MAX_IMAGE_LEN: usize = 255;

impl CatalogDefinition {
    /// Checks every field, returning all violations at once.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut v = Violations::default();
        check_name(&mut v, "name", &self.name);
        check_text(
            &mut v,
            "description",
            &self.description,
            MAX_DESCRIPTION_LEN,
        );
        self.validate_runtime(&mut v);
        self.validate_schema(&mut v);
        self.validate_resources(&mut v);
        if let Some(secs) = self.gateway.call_timeout_secs {
            if secs == 0 || secs > MAX_CALL_TIMEOUT_SECS {
                v.add(
                    "gateway.call_timeout_secs",
                    format!("must be between 1 and {MAX_CALL_TIMEOUT_SECS}"),
                );
            }
        }
        v.into_result()
    }

    /// The schema entry for `key`, if any.
    pub fn key(&self, key: &str) -> Option<&ConfigKey> {
        self.config_schema.iter().find(|k| k.key == key)
    }

    fn validate_runtime(&self, v: &mut Violations) {
        match &self.runtime {
            RuntimeSpec::Docker {
                image,
                command,
                port,
            } => {
                if !is_image_reference(image) {
                    v.add(
                        "runtime.image",
                        "must be an image reference like `registry/name:tag` or `name@sha256:…`",
                    );
                }
                check_args(v, "runtime.command", command);
                if *port == Some(0) {
                    v.add("runtime.port", "must be between 1 and 65535");
                }
                if self.transport == Transport::Http && port.is_none() {
                    v.add("runtime.port", "is required for an http server");
                }
            }
            RuntimeSpec::Process { command, args } => {
                if command.is_empty() || command.len() > 1024 || command.contains('\0') {
                    v.add(
                        "runtime.command",
                        "must be a program name or path of 1 to 1024 bytes",
                    );
                }
                check_args(v, "runtime.args", args);
            }
            RuntimeSpec::OpenApi {
                document,
                base_url,
                auth,
                health_path,
                operations,
            } => {
                if self.transport != Transport::Stdio {
                    v.add(
                        "transport",
                        "an openapi entry is served by Berth itself over an in-process pipe: use `stdio`",
                    );
                }
                check_outside_url(v, "runtime.base_url", base_url);
                if !health_path.starts_with('/')
                    || health_path.len() > 1024
                    || health_path.chars().any(char::is_whitespace)
                {
                    v.add(
                        "runtime.health_path",
                        "must be a path starting with `/`, at most 1024 characters",
                    );
                }
                self.validate_auth(v, auth);
                if let Err(errors) = super::openapi::operations(document, operations) {
                    errors.into_iter().for_each(|e| v.add(e.field, e.message));
                }
            }
            RuntimeSpec::Remote { url, auth } => {
                if self.transport != Transport::Http {
                    v.add(
                        "transport",
                        "a remote server is reached over Streamable HTTP: use `http`",
                    );
                }
                check_outside_url(v, "runtime.url", url);
                if matches!(auth, ApiAuth::Query { .. }) {
                    v.add(
                        "runtime.auth.type",
                        "a remote server's credential goes in a header (`header`, `bearer` or \
                         `basic`): in the query it would be part of URLs that get logged",
                    );
                }
                self.validate_auth(v, auth);
            }
        }
    }

    /// The credential's keys are keys of the schema (secret where they must be), and its
    /// names are plain.
    fn validate_auth(&self, v: &mut Violations, auth: &ApiAuth) {
        for (field, key, secret) in auth.keys() {
            match self.key(key) {
                Some(k) if k.secret || !secret => {}
                Some(_) => v.add(
                    field,
                    format!("`{key}` must be a secret key of config_schema"),
                ),
                None => v.add(field, format!("`{key}` is not a key of config_schema")),
            }
        }
        if let Err(errors) = auth.check_names() {
            errors.into_iter().for_each(|(f, m)| v.add(f, m));
        }
    }

    fn validate_schema(&self, v: &mut Violations) {
        if self.config_schema.len() > MAX_SCHEMA_KEYS {
            v.add(
                "config_schema",
                format!("must have at most {MAX_SCHEMA_KEYS} keys"),
            );
        }
        let mut seen = BTreeSet::new();
        for (i, key) in self.config_schema.iter().enumerate() {
            let field = format!("config_schema[{i}]");
            if !is_env_name(&key.key) {
                v.add(
                    format!("{field}.key"),
                    "must be an environment variable name: letters, digits and '_', not starting with a digit, at most 128 characters",
                );
            } else if !seen.insert(key.key.as_str()) {
                v.add(
                    format!("{field}.key"),
                    format!("`{}` is listed twice", key.key),
                );
            }
            check_text(
                v,
                &format!("{field}.description"),
                &key.description,
                MAX_DESCRIPTION_LEN,
            );
            if key.secret && key.default.is_some() {
                v.add(
                    format!("{field}.default"),
                    "a secret key cannot have a default",
                );
            }
            if let Some(default) = &key.default {
                check_value(v, &format!("{field}.default"), default);
            }
        }
    }

    fn validate_resources(&self, v: &mut Violations) {
        let r = &self.resources;
        if r.memory_mb.is_some_and(|m| !(6..=1_048_576).contains(&m)) {
            v.add("resources.memory_mb", "must be between 6 and 1048576");
        }
        if r.cpus
            .is_some_and(|c| !(c.is_finite() && c > 0.0 && c <= 1024.0))
        {
            v.add("resources.cpus", "must be greater than 0 and at most 1024");
        }
        if r.pids.is_some_and(|p| !(1..=1_000_000).contains(&p)) {
            v.add("resources.pids", "must be between 1 and 1000000");
        }
    }
}

/// Checks one config value: bounded, no NUL (it becomes an environment variable).
pub(crate) fn check_value(v: &mut Violations, field: &str, value: &str) {
    if value.len() > MAX_VALUE_LEN {
        v.add(field, format!("must be at most {MAX_VALUE_LEN} bytes"));
    } else if value.contains('\0') {
        v.add(field, "must not contain NUL characters");
    }
}

/// A URL Berth sends requests to with a server's credential: `http` or `https` with a
/// host, and no user or password in it (the credential goes in `auth`, kept secret; a URL
/// is written wherever it is logged).
fn check_outside_url(v: &mut Violations, field: &str, url: &str) {
    if !is_http_url(url) {
        v.add(
            field,
            "must be an http:// or https:// URL with a host, at most 2048 characters",
        );
    } else if has_userinfo(url) {
        v.add(
            field,
            "must not carry a user or password: the credential goes in `auth`, as a secret key",
        );
    }
}

/// Whether `url`'s authority names a user (`scheme://user[:password]@host`).
fn has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.contains('@')
}

/// An absolute `http` or `https` URL with a host, without spaces.
fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    url.len() <= 2048
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
        && rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

fn check_args(v: &mut Violations, field: &str, args: &[String]) {
    if args.len() > MAX_ARGS {
        v.add(field, format!("must have at most {MAX_ARGS} items"));
    }
    for (i, arg) in args.iter().enumerate() {
        if arg.len() > 4096 || arg.contains('\0') {
            v.add(
                format!("{field}[{i}]"),
                "must be at most 4096 bytes without NUL characters",
            );
        }
    }
}

fn is_env_name(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A Docker image reference: `[registry[:port]/]path[:tag][@digest]`, in the characters
/// Docker allows, lower-case repository path, no whitespace.
fn is_image_reference(image: &str) -> bool {
    if image.is_empty() || image.len() > MAX_IMAGE_LEN {
        return false;
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@');
    if !image.chars().all(allowed) {
        return false;
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let Some((algo, hex)) = d.split_once(':') else {
            return false;
        };
        if algo.is_empty() || hex.is_empty() {
            return false;
        }
    }
    // A tag is what follows the last ':' when it comes after the last '/'.
    let (repo, tag) = match name.rfind(':') {
        Some(i) if i > name.rfind('/').unwrap_or(0) => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    };
    if tag.is_some_and(|t| t.is_empty() || t.len() > 128) {
        return false;
    }
    let mut parts = repo.split('/');
    let first = parts.next().unwrap_or_default();
    let first_is_registry = first.contains('.') || first.contains(':') || first == "localhost";
    let path_ok = |p: &str| {
        !p.is_empty()
            && p.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            })
            && p.starts_with(|c: char| c.is_ascii_alphanumeric())
    };
    (first_is_registry || path_ok(first)) && !first.is_empty() && parts.all(path_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker(image: &str) -> CatalogDefinition {
        CatalogDefinition {
            name: "fixture".into(),
            description: String::new(),
            transport: Transport::Stdio,
            runtime: RuntimeSpec::Docker {
                image: image.into(),
                command: vec![],
                port: None,
            },
            config_schema: vec![],
            resources: Resources::default(),
            gateway: Default::default(),
        }
    }

    #[test]
    fn image_references_are_checked() {
        for ok in [
            "alpine",
            "alpine:3.20",
            "ghcr.io/github/github-mcp-server:latest",
            "localhost:5000/a/b",
            "mcp/fetch@sha256:abcdef",
        ] {
            assert!(docker(ok).validate().is_ok(), "{ok} should be accepted");
        }
        for bad in ["", "Alpine", "a b", "a;rm -rf /", "a:", "$(x)", "a@sha256"] {
            let err = docker(bad).validate().unwrap_err();
            assert_eq!(err[0].field, "runtime.image", "{bad} should be refused");
        }
    }

    #[test]
    fn secret_keys_cannot_have_defaults_and_keys_are_unique() {
        let mut d = docker("alpine");
        d.config_schema = vec![
            ConfigKey {
                key: "TOKEN".into(),
                description: String::new(),
                required: true,
                secret: true,
                default: Some("x".into()),
            },
            ConfigKey {
                key: "TOKEN".into(),
                description: String::new(),
                required: false,
                secret: false,
                default: None,
            },
            ConfigKey {
                key: "1BAD".into(),
                description: String::new(),
                required: false,
                secret: false,
                default: None,
            },
        ];
        let fields: Vec<_> = d
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "config_schema[0].default",
                "config_schema[1].key",
                "config_schema[2].key"
            ]
        );
    }

    #[test]
    fn http_servers_need_a_port_and_limits_are_bounded() {
        let mut d = docker("alpine");
        d.transport = Transport::Http;
        d.resources = Resources {
            memory_mb: Some(1),
            cpus: Some(f64::NAN),
            pids: Some(0),
        };
        let fields: Vec<_> = d
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "runtime.port",
                "resources.memory_mb",
                "resources.cpus",
                "resources.pids"
            ]
        );
    }
}
