//! Settings of the `berth` binary, layered: defaults → TOML file (`--config` or
//! `BERTH_CONFIG`) → environment (`RUST_LOG`, `DATABASE_URL`, `BERTH_*`) → flags.
//! Unknown keys in the file are an error, so a misspelt setting is never ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_application::bulk::BulkDriverOptions;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::gateway::GatewayOptions;
use crate::http::rate_limit::RateLimitOptions;
use crate::serve::role::NodeRole;
use crate::serve::runtimes::RuntimeChoice;
use crate::serve::server::ServeConfig;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting, after layering.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the admin token, master key and embedded cluster live.
    pub data_dir: PathBuf,
    /// The HTTP listen address.
    pub listen: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A `RUST_LOG`-style filter, e.g. `info,berth_api=debug`.
    pub log: String,
    /// An external PostgreSQL server; unset starts the embedded cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// HTTP worker threads.
    pub workers: usize,
    /// Database connections.
    pub pool_size: usize,
    /// Seconds in-flight requests get to finish when stopping.
    pub shutdown_timeout_secs: u64,
    /// Which runtime runs MCP servers: `auto`, `docker` or `process`.
    pub runtime: RuntimeChoice,
    /// Which parts of Berth run here: `all`, `api` or `worker`.
    pub role: NodeRole,
    /// The name this process goes by among those on its database (default: host name
    /// and port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Where the other processes on the database reach this one, e.g.
    /// `http://berth-worker-0.berth:7070` (default: the listen address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_url: Option<String>,
    /// Servers of one bulk operation acted on at the same time.
    pub bulk_concurrency: usize,
    /// Requests per second each API credential may send (`0`: no limit).
    pub rate_limit_per_second: u32,
    /// Requests each API credential may send at once.
    pub rate_limit_burst: u32,
    /// Seconds the tokens of `POST /api/v1/auth/token` live.
    pub token_ttl_secs: u64,
    /// Seconds between signed checkpoints of the event log (one is also signed at stop).
    pub checkpoint_interval_secs: u64,
    /// Tool calls per second each API key may make through the gateway (`0`: no limit).
    pub gateway_calls_per_second: u32,
    /// Tool calls each API key may make at once.
    pub gateway_calls_burst: u32,
    /// Calls per second each API key may make of any one tool (`0`: no limit).
    pub gateway_tool_calls_per_second: u32,
    /// Calls each API key may make of any one tool at once.
    pub gateway_tool_calls_burst: u32,
    /// Calls in flight to one server at most.
    pub gateway_max_in_flight: usize,
    /// Browser origins allowed to call `/mcp` (e.g. `https://app.example.com:443`).
    pub gateway_allowed_origins: Vec<String>,
    /// Networks beyond the public internet that registered APIs may be reached at
    /// (e.g. `10.1.0.0/16`, `127.0.0.1`).
    pub upstream_allowed_networks: Vec<String>,
    /// A PEM file of certificate authorities trusted, besides the system's, by the HTTPS
    /// connections Berth makes.
    pub upstream_ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("log_format", &self.log_format)
            .field("log", &self.log)
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field("workers", &self.workers)
            .field("pool_size", &self.pool_size)
            .field("shutdown_timeout_secs", &self.shutdown_timeout_secs)
            .field("runtime", &self.runtime)
            .field("role", &self.role)
            .field("node", &self.node)
            .field("advertise_url", &self.advertise_url)
            .field("bulk_concurrency", &self.bulk_concurrency)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("checkpoint_interval_secs", &self.checkpoint_interval_secs)
            .field("gateway_calls_per_second", &self.gateway_calls_per_second)
            .field("gateway_calls_burst", &self.gateway_calls_burst)
            .field(
                "gateway_tool_calls_per_second",
                &self.gateway_tool_calls_per_second,
            )
            .field("gateway_tool_calls_burst", &self.gateway_tool_calls_burst)
            .field("gateway_max_in_flight", &self.gateway_max_in_flight)
            .field("gateway_allowed_origins", &self.gateway_allowed_origins)
            .field("upstream_allowed_networks", &self.upstream_allowed_networks)
            .field("upstream_ca_file", &self.upstream_ca_file)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        let gateway = GatewayOptions::default();
        Self {
            data_dir: PathBuf::from("./.berth"),
            listen: "127.0.0.1:7070".into(),
            log_format: LogFormat::Text,
            log: "info".into(),
            database_url: None,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            pool_size: 16,
            shutdown_timeout_secs: 10,
            runtime: RuntimeChoice::Auto,
            role: NodeRole::All,
            node: None,
            advertise_url: None,
            bulk_concurrency: BulkDriverOptions::default().concurrency,
            rate_limit_per_second: RateLimitOptions::default().per_second,
            rate_limit_burst: RateLimitOptions::default().burst,
            token_ttl_secs: crate::serve::server::DEFAULT_TOKEN_TTL.as_secs(),
            checkpoint_interval_secs: crate::serve::server::DEFAULT_CHECKPOINT_INTERVAL.as_secs(),
            gateway_calls_per_second: gateway.calls_per_key.per_second,
            gateway_calls_burst: gateway.calls_per_key.burst,
            gateway_tool_calls_per_second: gateway.calls_per_tool.per_second,
            gateway_tool_calls_burst: gateway.calls_per_tool.burst,
            gateway_max_in_flight: gateway.max_in_flight,
            gateway_allowed_origins: gateway.allowed_origins,
            upstream_allowed_networks: Vec::new(),
            upstream_ca_file: None,
        }
    }
}

/// The settings given as command-line flags; unset ones do not override.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlagOverrides {
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `--log-format`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// `--runtime`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeChoice>,
    /// `--role`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<NodeRole>,
    /// `--node`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The keys `BERTH_*` environment variables may set (`BERTH_DATA_DIR` → `data_dir`).
/// Others, such as `BERTH_CONFIG` or `BERTH_MASTER_KEY`, are read where they are used.
pub const ENV_KEYS: [&str; 25] = [
    "runtime",
    "role",
    "node",
    "advertise_url",
    "data_dir",
    "listen",
    "log_format",
    "log",
    "database_url",
    "workers",
    "pool_size",
    "shutdown_timeout_secs",
    "bulk_concurrency",
    "rate_limit_per_second",
    "rate_limit_burst",
    "token_ttl_secs",
    "checkpoint_interval_secs",
    "gateway_calls_per_second",
    "gateway_calls_burst",
    "gateway_tool_calls_per_second",
    "gateway_tool_calls_burst",
    "gateway_max_in_flight",
    "gateway_allowed_origins",
    "upstream_allowed_networks",
    "upstream_ca_file",
];

impl Settings {
    /// Layers defaults, the TOML `file` (which must exist when given), the environment
    /// and `flags`.
    pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Self, Box<figment::Error>> {
        Self::figment(file, flags).extract().map_err(Box::new)
    }

    fn figment(file: Option<&Path>, flags: &FlagOverrides) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment
            .merge(Env::raw().only(&["rust_log"]).map(|_| "log".into()))
            .merge(Env::raw().only(&["database_url"]))
            .merge(Env::prefixed("BERTH_").only(&ENV_KEYS))
            .merge(Serialized::defaults(flags))
    }

    /// What `berth serve` starts with.
    pub fn serve_config(&self) -> ServeConfig {
        let mut config = ServeConfig::new(&self.data_dir).with_listen(&self.listen);
        if let Some(url) = &self.database_url {
            config = config.with_database_url(url);
        }
        config.workers = self.workers.max(1);
        config.pool_size = self.pool_size.max(2);
        config.shutdown_timeout = Duration::from_secs(self.shutdown_timeout_secs);
        config.runtime = self.runtime;
        config.role = self.role;
        config.node = self.node.clone();
        config.advertise_url = self.advertise_url.clone();
        config.bulk.concurrency = self.bulk_concurrency.max(1);
        config.rate_limit = RateLimitOptions {
            per_second: self.rate_limit_per_second,
            burst: self.rate_limit_burst.max(1),
        };
        config.token_ttl = Duration::from_secs(self.token_ttl_secs.clamp(1, 24 * 3600));
        config.checkpoint_interval =
            Duration::from_secs(self.checkpoint_interval_secs.clamp(1, 24 * 3600));
        config.gateway = GatewayOptions {
            calls_per_key: RateLimitOptions {
                per_second: self.gateway_calls_per_second,
                burst: self.gateway_calls_burst.max(1),
            },
            calls_per_tool: RateLimitOptions {
                per_second: self.gateway_tool_calls_per_second,
                burst: self.gateway_tool_calls_burst.max(1),
            },
            max_in_flight: self.gateway_max_in_flight.max(1),
            allowed_origins: self.gateway_allowed_origins.clone(),
            ..GatewayOptions::default()
        };
        config.upstream_allowed_networks = self.upstream_allowed_networks.clone();
        config.upstream_ca_file = self.upstream_ca_file.clone();
        config
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("temp file: {e}"));
        f.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("write: {e}"));
        f
    }

    #[test]
    fn the_file_overrides_defaults_and_flags_override_the_file() {
        let f =
            file("listen = \"0.0.0.0:9000\"\ndata_dir = \"/srv/berth\"\nlog_format = \"json\"\n");
        let settings = Settings::load(Some(f.path()), &FlagOverrides::default());
        let settings = settings.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(settings.listen, "0.0.0.0:9000");
        assert_eq!(settings.data_dir, PathBuf::from("/srv/berth"));
        assert_eq!(settings.log_format, LogFormat::Json);
        assert_eq!(settings.pool_size, Settings::default().pool_size);

        let flags = FlagOverrides {
            listen: Some("127.0.0.1:1".into()),
            ..FlagOverrides::default()
        };
        let settings = Settings::load(Some(f.path()), &flags).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(settings.listen, "127.0.0.1:1");
        assert_eq!(settings.data_dir, PathBuf::from("/srv/berth"));
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        let f = file("listen = \"0.0.0.0:9000\"\nlisten_adress = \"x\"\n");
        let err = Settings::load(Some(f.path()), &FlagOverrides::default());
        let message = err.map(|_| String::new()).unwrap_or_else(|e| e.to_string());
        assert!(message.contains("listen_adress"), "{message}");
        assert!(Settings::load(
            Some(Path::new("/nonexistent/berth.toml")),
            &FlagOverrides::default()
        )
        .is_err());
    }

    #[test]
    fn gateway_limits_and_origins_come_from_the_file() {
        let defaults = Settings::default().serve_config().gateway;
        assert_eq!(defaults, GatewayOptions::default());
        let f = file(
            "gateway_tool_calls_per_second = 0\ngateway_max_in_flight = 4\n\
             gateway_allowed_origins = [\"https://app.example.com:443\"]\n",
        );
        let config = Settings::load(Some(f.path()), &FlagOverrides::default())
            .unwrap_or_else(|e| panic!("{e}"))
            .serve_config()
            .gateway;
        assert_eq!(config.calls_per_tool.per_second, 0);
        assert_eq!(config.max_in_flight, 4);
        assert_eq!(config.allowed_origins, ["https://app.example.com:443"]);
        assert_eq!(config.calls_per_key, defaults.calls_per_key);
    }

    #[test]
    fn rate_limits_come_from_the_file_and_zero_turns_them_off() {
        let defaults = Settings::default().serve_config().rate_limit;
        assert_eq!((defaults.per_second, defaults.burst), (100, 200));
        let f = file("rate_limit_per_second = 0\nrate_limit_burst = 7\n");
        let settings = Settings::load(Some(f.path()), &FlagOverrides::default());
        let config = settings.unwrap_or_else(|e| panic!("{e}")).serve_config();
        assert_eq!(
            (config.rate_limit.per_second, config.rate_limit.burst),
            (0, 7)
        );
    }

    #[test]
    fn settings_never_print_the_database_url() {
        let settings = Settings {
            database_url: Some("postgres://u:hunter2@h/db".into()),
            ..Settings::default()
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
        assert!(!format!("{:?}", settings.serve_config()).contains("hunter2"));
    }
}
