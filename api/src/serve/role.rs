//! What one `berth serve` does when several run on one database (`--role`), and the name
//! it goes by (`--node`).

use serde::{Deserialize, Serialize};

/// Which parts of Berth this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Both: the API and the worker.
    #[default]
    All,
    /// REST, the live streams, the console and the MCP gateway. Commands are recorded;
    /// a worker acts on them.
    Api,
    /// The projections, the process manager, the bulk driver, the reconciler and the
    /// checkpointer; over HTTP only health, metrics and the node-to-node routes.
    Worker,
}

impl NodeRole {
    /// `all`, `api` or `worker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Api => "api",
            Self::Worker => "worker",
        }
    }

    /// Whether it serves the API, the console and the gateway.
    pub fn serves_api(self) -> bool {
        matches!(self, Self::All | Self::Api)
    }

    /// Whether it runs the projections and may become the active worker.
    pub fn works(self) -> bool {
        matches!(self, Self::All | Self::Worker)
    }
}

/// The node name of a process given none: the machine's host name and the port it
/// listens on, unique among the processes of one machine and stable across its restarts.
pub fn default_node_name(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{port}")
}
