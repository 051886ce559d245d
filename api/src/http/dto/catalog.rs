//! The catalog entry body of `POST`/`PUT /api/v1/catalog`: the domain's
//! `CatalogDefinition`, field for field, with an OpenAPI schema (the domain crate knows
//! nothing of utoipa).

use berth_domain::catalog::openapi::ApiAuth;
use berth_domain::catalog::{
    CatalogDefinition, CatalogKind, ConfigKey, GatewaySettings, Resources, RuntimeSpec, Transport,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a client talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransportDto {
    /// JSON-RPC over standard input and output.
    Stdio,
    /// Streamable HTTP on a port the server listens on.
    Http,
}

impl From<TransportDto> for Transport {
    fn from(t: TransportDto) -> Self {
        match t {
            TransportDto::Stdio => Transport::Stdio,
            TransportDto::Http => Transport::Http,
        }
    }
}

/// Whether an entry ships with Berth or was added through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatalogKindDto {
    /// Shipped with Berth.
    Predefined,
    /// Added by a user.
    Custom,
}

impl From<CatalogKindDto> for CatalogKind {
    fn from(k: CatalogKindDto) -> Self {
        match k {
            CatalogKindDto::Predefined => CatalogKind::Predefined,
            CatalogKindDto::Custom => CatalogKind::Custom,
        }
    }
}

/// How to run the server.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuntimeSpecDto {
    /// A container image run by the Docker runtime.
    Docker {
        /// Image reference, e.g. `ghcr.io/github/github-mcp-server`.
        image: String,
        /// Overrides the image's command when not empty.
        #[serde(default)]
        command: Vec<String>,
        /// The port an `http` server listens on inside the container.
        #[serde(default)]
        #[schema(minimum = 1, maximum = 65535)]
        port: Option<u16>,
    },
    /// A local command run by the process runtime (no shell is involved).
    Process {
        /// The program, e.g. `npx`.
        command: String,
        /// Its arguments, passed as they are.
        #[serde(default)]
        args: Vec<String>,
    },
    /// A registered HTTP API, served by Berth itself: each chosen operation of its
    /// OpenAPI document is a tool.
    #[serde(rename = "openapi")]
    OpenApi {
        /// The API's OpenAPI 3.0 or 3.1 document: a JSON object, or YAML or JSON text.
        /// Kept in the entry's event as JSON. Give it or `document_url`.
        #[serde(default)]
        #[schema(value_type = Option<serde_json::Value>)]
        document: Option<serde_json::Value>,
        /// Where to fetch the document from, once, at registration (the addresses
        /// registered APIs may reach; at most 4 MiB); what was fetched is kept.
        #[serde(default)]
        document_url: Option<String>,
        /// Where its requests go, e.g. `https://api.example.com/v1`.
        base_url: String,
        /// How its requests authenticate.
        #[serde(default)]
        auth: ApiAuthDto,
        /// The path whose `GET` must answer (below 500) for a server to be `running`
        /// (default `/`).
        #[serde(default)]
        health_path: Option<String>,
        /// The operations offered as tools (`operationId` or `METHOD /path`); every
        /// `GET` when empty.
        #[serde(default)]
        operations: Vec<String>,
    },
    /// An MCP server someone else runs, reached at its URL over Streamable HTTP
    /// (transport `http`); Berth runs nothing for it.
    Remote {
        /// Its MCP endpoint, e.g. `https://mcp.example.com/mcp`.
        url: String,
        /// How its requests authenticate.
        #[serde(default)]
        auth: ApiAuthDto,
    },
}

/// How a registered API's (or a remote server's) requests authenticate; credentials are config keys of each
/// server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ApiAuthDto {
    /// No credential.
    #[default]
    None,
    /// A header carrying a secret.
    Header {
        /// The header's name, e.g. `X-API-Key`.
        name: String,
        /// The secret config key holding its value.
        secret: String,
    },
    /// A query parameter carrying a secret.
    Query {
        /// The parameter's name, e.g. `api_key`.
        name: String,
        /// The secret config key holding its value.
        secret: String,
    },
    /// `Authorization: Bearer <secret>`.
    Bearer {
        /// The secret config key holding the token.
        secret: String,
    },
    /// `Authorization: Basic` from a user name and a password.
    Basic {
        /// The config key holding the user name.
        username: String,
        /// The secret config key holding the password.
        password: String,
    },
}

impl From<ApiAuthDto> for ApiAuth {
    fn from(a: ApiAuthDto) -> Self {
        match a {
            ApiAuthDto::None => ApiAuth::None,
            ApiAuthDto::Header { name, secret } => ApiAuth::Header { name, secret },
            ApiAuthDto::Query { name, secret } => ApiAuth::Query { name, secret },
            ApiAuthDto::Bearer { secret } => ApiAuth::Bearer { secret },
            ApiAuthDto::Basic { username, password } => ApiAuth::Basic { username, password },
        }
    }
}

impl From<RuntimeSpecDto> for RuntimeSpec {
    fn from(r: RuntimeSpecDto) -> Self {
        match r {
            RuntimeSpecDto::Docker {
                image,
                command,
                port,
            } => RuntimeSpec::Docker {
                image,
                command,
                port,
            },
            RuntimeSpecDto::Process { command, args } => RuntimeSpec::Process { command, args },
            // The edge resolves the document first ([`crate::http::api_document`]); one
            // still missing is refused by the document's own checks.
            RuntimeSpecDto::OpenApi {
                document,
                document_url: _,
                base_url,
                auth,
                health_path,
                operations,
            } => RuntimeSpec::OpenApi {
                document: document.unwrap_or_default(),
                base_url,
                auth: auth.into(),
                health_path: health_path.unwrap_or_else(|| "/".to_owned()),
                operations,
            },
            RuntimeSpecDto::Remote { url, auth } => RuntimeSpec::Remote {
                url,
                auth: auth.into(),
            },
        }
    }
}

/// One configuration key servers of this kind take.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigKeyDto {
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
    #[serde(default)]
    pub default: Option<String>,
}

impl From<ConfigKeyDto> for ConfigKey {
    fn from(k: ConfigKeyDto) -> Self {
        ConfigKey {
            key: k.key,
            description: k.description,
            required: k.required,
            secret: k.secret,
            default: k.default,
        }
    }
}

/// Limits applied to each running server of this kind.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesDto {
    /// Memory limit in MiB.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// CPU limit in cores (e.g. 0.5).
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    #[serde(default)]
    pub pids: Option<u64>,
}

impl From<ResourcesDto> for Resources {
    fn from(r: ResourcesDto) -> Self {
        Resources {
            memory_mb: r.memory_mb,
            cpus: r.cpus,
            pids: r.pids,
        }
    }
}

/// What a catalog entry says: the body of `POST` and `PUT /api/v1/catalog`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntryBody {
    /// Short name, e.g. `github`: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// What the server does.
    #[serde(default)]
    pub description: String,
    /// How clients talk to it.
    pub transport: TransportDto,
    /// How it is run.
    pub runtime: RuntimeSpecDto,
    /// The keys its configuration takes.
    #[serde(default)]
    pub config_schema: Vec<ConfigKeyDto>,
    /// Resource limits.
    #[serde(default)]
    pub resources: ResourcesDto,
    /// How the MCP gateway treats its servers.
    #[serde(default)]
    pub gateway: GatewaySettingsDto,
}

/// How the MCP gateway treats an entry's servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettingsDto {
    /// How long one tool call may take, in seconds (1 to 3600; 60 when unset).
    #[serde(default)]
    pub call_timeout_secs: Option<u32>,
    /// Keep each call's arguments, sealed under the caller's data key, readable by the
    /// caller and administrators at `GET /api/v1/calls/{id}` until the caller is
    /// forgotten (default: only their SHA-256 and size).
    #[serde(default)]
    pub keep_arguments: bool,
}

impl From<GatewaySettingsDto> for GatewaySettings {
    fn from(g: GatewaySettingsDto) -> Self {
        GatewaySettings {
            call_timeout_secs: g.call_timeout_secs,
            keep_arguments: g.keep_arguments,
        }
    }
}

impl From<CatalogEntryBody> for CatalogDefinition {
    fn from(b: CatalogEntryBody) -> Self {
        CatalogDefinition {
            name: b.name,
            description: b.description,
            transport: b.transport.into(),
            runtime: b.runtime.into(),
            config_schema: b.config_schema.into_iter().map(Into::into).collect(),
            resources: b.resources.into(),
            gateway: b.gateway.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DTO and the domain type accept the same documents and mean the same thing.
    #[test]
    fn the_body_mirrors_the_domain_definition() {
        let doc = r#"{
            "name": "github",
            "description": "GitHub",
            "transport": "stdio",
            "runtime": {"type": "docker", "image": "ghcr.io/github/github-mcp-server", "command": ["stdio"]},
            "config_schema": [{"key": "TOKEN", "required": true, "secret": true}],
            "resources": {"memory_mb": 256, "cpus": 0.5, "pids": 64}
        }"#;
        let body: Result<CatalogEntryBody, _> = serde_json::from_str(doc);
        let domain: Result<CatalogDefinition, _> = serde_json::from_str(doc);
        match (body, domain) {
            (Ok(body), Ok(domain)) => assert_eq!(CatalogDefinition::from(body), domain),
            other => panic!("both should parse: {other:?}"),
        }
        let process = r#"{"name":"p","transport":"stdio","runtime":{"type":"process","command":"npx","args":["-y","x"]}}"#;
        let body: Result<CatalogEntryBody, _> = serde_json::from_str(process);
        let domain: Result<CatalogDefinition, _> = serde_json::from_str(process);
        assert_eq!(body.ok().map(CatalogDefinition::from), domain.ok());
        let unknown = r#"{"name":"p","transport":"stdio","runtime":{"type":"process","command":"x","image":"y"}}"#;
        assert!(serde_json::from_str::<CatalogEntryBody>(unknown).is_err());
    }
}
