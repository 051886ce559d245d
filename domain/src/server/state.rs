//! The lifecycle states of a server.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a server is in its lifecycle.
///
/// ```text
/// stopped ─start▶ pending ─▶ creating ─▶ starting ─▶ running ─stop/disable▶ stopping ─▶ stopped
///                    └──────────┴───────────┴──▶ failed (can be started again)
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// Not running; the initial state.
    #[default]
    Stopped,
    /// Asked to start; waiting for the runtime.
    Pending,
    /// The runtime is creating its container or process.
    Creating,
    /// Created; being started.
    Starting,
    /// Running.
    Running,
    /// Asked to stop; waiting for the runtime.
    Stopping,
    /// Could not start, or exited unexpectedly.
    Failed,
}

impl ServerState {
    /// Every state, for exhaustive tests and documentation.
    pub const ALL: [ServerState; 7] = [
        Self::Stopped,
        Self::Pending,
        Self::Creating,
        Self::Starting,
        Self::Running,
        Self::Stopping,
        Self::Failed,
    ];

    /// The name used in the API and in errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Pending => "pending",
            Self::Creating => "creating",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Failed => "failed",
        }
    }

    /// Parses the API name of a state.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// States in which a container or process may exist or be about to exist, so
    /// stopping (and, for deletion, removal) must go through the runtime.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Creating | Self::Starting | Self::Running
        )
    }
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the last health check said.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Never checked, or not running.
    #[default]
    Unknown,
    /// Answered the MCP handshake.
    Healthy,
    /// Did not answer, or answered wrongly.
    Unhealthy,
}

/// A tool an MCP server offers, as `tools/list` reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// The tool's name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema of its arguments (`inputSchema`), which clients need to call it.
    /// Absent in events recorded before it was kept, and for a schema over
    /// [`MAX_INPUT_SCHEMA_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<serde_json::Value>,
}

/// The largest input schema kept with a tool (as JSON text): the event log keeps every
/// tool list forever, and a real schema is a few KiB.
pub const MAX_INPUT_SCHEMA_BYTES: usize = 64 * 1024;

impl Tool {
    /// The tool as Berth keeps it: its input schema only when it is no larger than
    /// [`MAX_INPUT_SCHEMA_BYTES`] (a larger one is left out, not refused, so one odd tool
    /// does not keep a server from running).
    pub fn kept(
        name: String,
        description: Option<String>,
        input_schema: serde_json::Value,
    ) -> Self {
        let size = serde_json::to_vec(&input_schema).map_or(usize::MAX, |bytes| bytes.len());
        Self {
            name,
            description,
            input_schema: (size <= MAX_INPUT_SCHEMA_BYTES).then_some(input_schema),
        }
    }
}

/// What Berth does when a running server fails or exits by itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RestartPolicy {
    /// Leave it `failed`.
    #[default]
    Never,
    /// Start it again, with a growing pause, at most `max_retries` times in a row
    /// (counted from the last start a person asked for).
    OnFailure {
        /// How many automatic restarts in a row are allowed.
        max_retries: u32,
    },
}
