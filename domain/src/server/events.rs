//! What happened to a server.

use std::collections::BTreeMap;

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::config::SealedSecret;
use super::sharing::Sharing;
use super::state::{Health, RestartPolicy, Tool};

/// What happened to a server. Secrets appear only sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    /// The server exists, stopped and enabled.
    Created {
        /// Its owner.
        owner: String,
        /// The catalog entry it instantiates.
        catalog_id: Uuid,
        /// The entry's version at creation.
        catalog_version: u32,
        /// Its name.
        name: String,
        /// Plain configuration.
        config: BTreeMap<String, String>,
        /// Sealed secrets.
        secrets: BTreeMap<String, SealedSecret>,
        /// What to do when it fails.
        #[serde(default)]
        restart_policy: RestartPolicy,
    },
    /// It runs another version of its catalog entry from its next start on.
    Upgraded {
        /// The version it ran until now.
        from_version: u32,
        /// The version it runs from now on.
        catalog_version: u32,
    },
    /// Its restart policy changed.
    RestartPolicyChanged {
        /// The policy from now on.
        restart_policy: RestartPolicy,
    },
    /// Berth started it again after a failure, as its restart policy allows (→ pending).
    RestartedAfterFailure {
        /// 1 for the first automatic restart in a row, 2 for the next, ...
        attempt: u32,
    },
    /// Berth started it again because its process ended with the Berth that ran it
    /// (→ pending); not a failure, and no restart attempt is used.
    Relaunched,
    /// Configuration or secrets changed; the whole new set is recorded.
    ConfigUpdated {
        /// Plain configuration from now on.
        config: BTreeMap<String, String>,
        /// Sealed secrets from now on.
        secrets: BTreeMap<String, SealedSecret>,
        /// The keys that changed (set or removed), for the audit trail.
        changed_keys: Vec<String>,
    },
    /// An `http` server answers MCP at this URL until it stops.
    EndpointPublished {
        /// The URL, e.g. `http://127.0.0.1:49153/mcp`.
        url: String,
    },
    /// Someone asked it to start (→ pending).
    StartRequested,
    /// The runtime began creating it (→ creating).
    ProvisioningBegan,
    /// The runtime created its container or process (→ starting).
    ContainerCreated {
        /// The runtime's id for it.
        container_id: String,
        /// The Berth node that created it (absent in events recorded before nodes were).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// Another node took over its running container: the node that ran it is gone, and
    /// the container outlived it.
    Adopted {
        /// The node that runs it from now on.
        node: String,
    },
    /// It is running (→ running).
    Running,
    /// It could not be started (→ failed).
    Failed {
        /// What went wrong, in words a person can act on.
        reason: String,
    },
    /// It stopped by itself while running (→ failed).
    Exited {
        /// Its exit code, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i64>,
        /// What went wrong.
        reason: String,
    },
    /// Someone asked it to stop (→ stopping).
    StopRequested,
    /// Someone asked it to restart (→ stopping, then started again once stopped).
    RestartRequested,
    /// It has stopped (→ stopped).
    Stopped,
    /// It may be started again.
    Enabled,
    /// It refuses to start until enabled.
    Disabled,
    /// Someone asked to delete it while it may be running (→ stopping, deleted once stopped).
    DeletionRequested,
    /// It is gone.
    Deleted,
    /// Its health check answered differently from last time.
    HealthChanged {
        /// The new health.
        health: Health,
    },
    /// Its `tools/list` answered differently from last time.
    ToolsDiscovered {
        /// The tools it offers.
        tools: Vec<Tool>,
    },
    /// An administrator changed who may use it through the gateway; the whole new
    /// sharing is recorded.
    SharingChanged {
        /// Who may use it from now on, besides its owner.
        sharing: Sharing,
    },
}

impl DomainEvent for ServerEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Created { .. } => "ServerCreated",
            Self::ConfigUpdated { .. } => "ServerConfigUpdated",
            Self::Upgraded { .. } => "ServerUpgraded",
            Self::RestartPolicyChanged { .. } => "ServerRestartPolicyChanged",
            Self::RestartedAfterFailure { .. } => "ServerRestartedAfterFailure",
            Self::Relaunched => "ServerRelaunched",
            Self::StartRequested => "ServerStartRequested",
            Self::ProvisioningBegan => "ServerProvisioningBegan",
            Self::ContainerCreated { .. } => "ServerContainerCreated",
            Self::Adopted { .. } => "ServerAdopted",
            Self::Running => "ServerRunning",
            Self::EndpointPublished { .. } => "ServerEndpointPublished",
            Self::Failed { .. } => "ServerFailed",
            Self::Exited { .. } => "ServerExited",
            Self::StopRequested => "ServerStopRequested",
            Self::RestartRequested => "ServerRestartRequested",
            Self::Stopped => "ServerStopped",
            Self::Enabled => "ServerEnabled",
            Self::Disabled => "ServerDisabled",
            Self::DeletionRequested => "ServerDeletionRequested",
            Self::Deleted => "ServerDeleted",
            Self::HealthChanged { .. } => "ServerHealthChanged",
            Self::ToolsDiscovered { .. } => "ServerToolsDiscovered",
            Self::SharingChanged { .. } => "ServerSharingChanged",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
