//! The `Server` aggregate: commands, the decisions they lead to, and how events change it.

use std::collections::BTreeMap;

use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::config::{validate_config, ConfigChange, SealedSecret};
use super::events::ServerEvent;
use super::sharing::Sharing;
use super::state::{Health, RestartPolicy, ServerState, Tool};
use crate::catalog::ConfigKey;
use crate::decide::handle_by_decide;
use crate::validation::{check_name, Violations};
use crate::FieldError;

/// One owner's instance of a catalog entry.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    /// Set once `Created` is applied.
    pub created: bool,
    /// Set once `Deleted` is applied; a deleted server accepts no command.
    pub deleted: bool,
    /// Its owner.
    pub owner: String,
    /// The catalog entry it instantiates.
    pub catalog_id: Option<Uuid>,
    /// The version of that entry it runs: the one it was created from, or the one its
    /// owner or an administrator upgraded it to. Later versions never reach it silently.
    #[serde(default)]
    pub catalog_version: u32,
    /// Its name.
    pub name: String,
    /// Plain configuration.
    pub config: BTreeMap<String, String>,
    /// Sealed secrets.
    pub secrets: BTreeMap<String, SealedSecret>,
    /// Lifecycle state.
    pub state: ServerState,
    /// Disabled servers refuse to start.
    pub enabled: bool,
    /// The runtime's id for its container or process.
    pub container_id: Option<String>,
    /// The Berth node (`berth serve --node`) that runs its container or process.
    pub node: Option<String>,
    /// Why it last failed.
    pub last_error: Option<String>,
    /// Start again once stopped.
    pub restart_pending: bool,
    /// Delete once stopped.
    pub delete_pending: bool,
    /// Last recorded health.
    pub health: Health,
    /// Last recorded tools.
    pub tools: Vec<Tool>,
    /// What to do when it fails.
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Automatic restarts in a row since the last start a person asked for.
    #[serde(default)]
    pub restart_attempts: u32,
    /// Where an `http` server answers MCP while it runs.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Who besides its owner may use it through the gateway.
    #[serde(default)]
    pub sharing: Sharing,
}

/// What may be asked of a server: by people (create … delete) and by the process
/// manager reporting what the runtime did (`Begin…`, `Record…`).
#[derive(Debug, Clone, PartialEq)]
pub enum ServerCommand {
    /// Create the server from a catalog entry; `schema` is that entry's config schema.
    Create {
        /// Its owner.
        owner: String,
        /// The catalog entry.
        catalog_id: Uuid,
        /// The entry's version now.
        catalog_version: u32,
        /// The entry's config schema, to validate against.
        schema: Vec<ConfigKey>,
        /// Its name.
        name: String,
        /// Plain configuration.
        config: BTreeMap<String, String>,
        /// Secrets, already sealed.
        secrets: BTreeMap<String, SealedSecret>,
        /// What to do when it fails.
        restart_policy: RestartPolicy,
    },
    /// Move it to another version of its catalog entry (applies from its next start).
    Upgrade {
        /// The version to run from now on.
        catalog_version: u32,
        /// That version's config schema, which its configuration must satisfy.
        schema: Vec<ConfigKey>,
    },
    /// Start it again after a failure, as its restart policy allows (process manager).
    RestartAfterFailure,
    /// Start it again because its process ended with the Berth that ran it, not by any
    /// fault of its own (process manager): no failure, no restart attempt used.
    Relaunch,
    /// Change some config keys and secrets.
    UpdateConfig {
        /// The catalog entry's current config schema.
        schema: Vec<ConfigKey>,
        /// Changes to plain keys.
        config: BTreeMap<String, ConfigChange<String>>,
        /// Changes to secrets, already sealed.
        secrets: BTreeMap<String, ConfigChange<SealedSecret>>,
        /// A new restart policy, if it changes.
        restart_policy: Option<RestartPolicy>,
    },
    /// Ask it to start.
    Start,
    /// Ask it to stop.
    Stop,
    /// Ask it to stop and start again.
    Restart,
    /// Allow it to start.
    Enable,
    /// Forbid it to start, stopping it when it runs.
    Disable,
    /// Delete it, stopping it first when it may run.
    Delete,
    /// The runtime began creating it.
    BeginProvisioning,
    /// The runtime created its container or process.
    RecordContainerCreated {
        /// The runtime's id for it.
        container_id: String,
        /// The node that created it.
        node: String,
    },
    /// Another node took over its running container (the one that ran it is gone).
    RecordAdopted {
        /// The node that runs it from now on.
        node: String,
    },
    /// It is running and answered the MCP handshake with these tools.
    RecordRunning {
        /// What its `tools/list` answered.
        tools: Vec<Tool>,
        /// The URL an `http` server answers MCP at (`None` for stdio servers).
        endpoint: Option<String>,
    },
    /// It could not be started or kept running.
    RecordFailed {
        /// What went wrong.
        reason: String,
    },
    /// It stopped by itself.
    RecordExited {
        /// Its exit code, when known.
        exit_code: Option<i64>,
        /// What went wrong.
        reason: String,
    },
    /// It has stopped as asked.
    RecordStopped,
    /// A health check answered.
    RecordHealth {
        /// What it said.
        health: Health,
    },
    /// `tools/list` answered.
    RecordTools {
        /// The tools it offers.
        tools: Vec<Tool>,
    },
    /// Let these people use it through the gateway (an administrator's decision; the
    /// whole sharing is given, replacing the one before).
    Share {
        /// Who may use it from now on, besides its owner.
        sharing: Sharing,
    },
}

impl ServerCommand {
    /// The command's name as people say it, used in errors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Create { .. } => "create",
            Self::UpdateConfig { .. } => "update",
            Self::Upgrade { .. } => "upgrade",
            Self::RestartAfterFailure => "restart after failure",
            Self::Relaunch => "relaunch",
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Enable => "enable",
            Self::Disable => "disable",
            Self::Delete => "delete",
            Self::BeginProvisioning => "begin provisioning",
            Self::RecordContainerCreated { .. } => "record the container of",
            Self::RecordAdopted { .. } => "record the adoption of",
            Self::RecordRunning { .. } => "record as running",
            Self::RecordFailed { .. } => "record a failure of",
            Self::RecordExited { .. } => "record the exit of",
            Self::RecordStopped => "record as stopped",
            Self::RecordHealth { .. } => "record the health of",
            Self::RecordTools { .. } => "record the tools of",
            Self::Share { .. } => "share",
        }
    }
}

/// Why a server command was refused. None of these produce events.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServerError {
    /// The server was created before.
    #[error("a server with this id already exists")]
    AlreadyExists,
    /// No such server, or it was deleted.
    #[error("server not found")]
    NotFound,
    /// The command makes no sense in the current state.
    #[error("cannot {command} a server that is {from}")]
    InvalidTransition {
        /// The current state.
        from: ServerState,
        /// The refused command.
        command: &'static str,
    },
    /// Disabled servers refuse to start.
    #[error("cannot {command} a server that is disabled; enable it first")]
    Disabled {
        /// The refused command.
        command: &'static str,
    },
    /// Enable on an enabled server.
    #[error("server is already enabled")]
    AlreadyEnabled,
    /// Disable on a disabled server.
    #[error("server is already disabled")]
    AlreadyDisabled,
    /// The server is being deleted.
    #[error("cannot {command} a server that is being deleted")]
    BeingDeleted {
        /// The refused command.
        command: &'static str,
    },
    /// The command's data breaks a rule.
    #[error("invalid server")]
    Invalid(Vec<FieldError>),
    /// The restart policy does not allow another automatic restart.
    #[error("the restart policy allows no further automatic restart")]
    RestartNotAllowed,
    /// An upgrade to the version the server already runs.
    #[error("the server already runs version {0} of its catalog entry")]
    AlreadyAtVersion(u32),
}

/// The most of a failure reason an event keeps: reasons carry a server's last output,
/// and the log is forever.
pub const MAX_REASON_BYTES: usize = 4 * 1024;

/// `reason` cut to [`MAX_REASON_BYTES`] at a character boundary, marked when cut.
fn bounded_reason(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        const MARK: &str = " … [cut]";
        let mut end = MAX_REASON_BYTES - MARK.len();
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str(MARK);
    }
    reason
}

impl Server {
    /// Decides which events `command` produces, without changing anything.
    pub fn decide(&self, command: ServerCommand) -> Result<Vec<ServerEvent>, ServerError> {
        use ServerEvent as E;
        use ServerState as S;
        if let ServerCommand::Create { .. } = command {
            return self.decide_create(command);
        }
        if !self.created || self.deleted {
            return Err(ServerError::NotFound);
        }
        let name = command.name();
        let refuse = || ServerError::InvalidTransition {
            from: self.state,
            command: name,
        };
        let refuse_deleting = || ServerError::BeingDeleted { command: name };
        let events = match command {
            ServerCommand::Create { .. } => unreachable!("handled above"),
            ServerCommand::UpdateConfig {
                schema,
                config,
                secrets,
                restart_policy,
            } => {
                if self.delete_pending {
                    return Err(refuse_deleting());
                }
                if let Some(e) = restart_policy.and_then(check_restart_policy) {
                    return Err(ServerError::Invalid(vec![e]));
                }
                let mut events = self.decide_update(&schema, config, secrets)?;
                if let Some(p) = restart_policy.filter(|p| *p != self.restart_policy) {
                    events.push(E::RestartPolicyChanged { restart_policy: p });
                }
                events
            }
            ServerCommand::Upgrade {
                catalog_version,
                schema,
            } => {
                if self.delete_pending {
                    return Err(refuse_deleting());
                }
                if catalog_version == self.catalog_version {
                    return Err(ServerError::AlreadyAtVersion(catalog_version));
                }
                validate_config(&schema, &self.config, &self.secrets)
                    .map_err(ServerError::Invalid)?;
                vec![E::Upgraded {
                    from_version: self.catalog_version,
                    catalog_version,
                }]
            }
            ServerCommand::RestartAfterFailure => {
                let allowed = match self.restart_policy {
                    RestartPolicy::Never => false,
                    RestartPolicy::OnFailure { max_retries } => self.restart_attempts < max_retries,
                };
                if self.state != S::Failed {
                    return Err(refuse());
                }
                if !allowed || !self.enabled || self.delete_pending {
                    return Err(ServerError::RestartNotAllowed);
                }
                vec![E::RestartedAfterFailure {
                    attempt: self.restart_attempts + 1,
                }]
            }
            ServerCommand::Relaunch => match self.state {
                S::Starting | S::Running if self.enabled && !self.delete_pending => {
                    vec![E::Relaunched]
                }
                _ => return Err(refuse()),
            },
            ServerCommand::Start => {
                if self.delete_pending {
                    return Err(refuse_deleting());
                }
                if !self.enabled {
                    return Err(ServerError::Disabled { command: name });
                }
                match self.state {
                    S::Stopped | S::Failed => vec![E::StartRequested],
                    _ => return Err(refuse()),
                }
            }
            ServerCommand::Stop => match self.state {
                s if s.is_active() => vec![E::StopRequested],
                _ => return Err(refuse()),
            },
            ServerCommand::Restart => {
                if self.delete_pending {
                    return Err(refuse_deleting());
                }
                if !self.enabled {
                    return Err(ServerError::Disabled { command: name });
                }
                match self.state {
                    s if s.is_active() => vec![E::RestartRequested],
                    S::Stopped | S::Failed => vec![E::StartRequested],
                    S::Stopping => return Err(refuse()),
                    _ => unreachable!("every state is covered above"),
                }
            }
            ServerCommand::Enable => {
                if self.enabled {
                    return Err(ServerError::AlreadyEnabled);
                }
                vec![E::Enabled]
            }
            ServerCommand::Disable => {
                if !self.enabled {
                    return Err(ServerError::AlreadyDisabled);
                }
                if self.state.is_active() {
                    vec![E::Disabled, E::StopRequested]
                } else {
                    vec![E::Disabled]
                }
            }
            ServerCommand::Delete => {
                if self.delete_pending {
                    return Err(refuse_deleting());
                }
                match self.state {
                    S::Stopped | S::Failed => vec![E::Deleted],
                    _ => vec![E::DeletionRequested],
                }
            }
            ServerCommand::BeginProvisioning => match self.state {
                S::Pending => vec![E::ProvisioningBegan],
                _ => return Err(refuse()),
            },
            ServerCommand::RecordContainerCreated { container_id, node } => match self.state {
                S::Creating => vec![E::ContainerCreated {
                    container_id,
                    node: Some(node),
                }],
                _ => return Err(refuse()),
            },
            ServerCommand::RecordAdopted { node } => match self.state {
                S::Starting | S::Running | S::Stopping if self.node.as_ref() != Some(&node) => {
                    vec![E::Adopted { node }]
                }
                _ => return Err(refuse()),
            },
            // Running, healthy and its tools are one fact (the handshake succeeded), so
            // they are recorded together: no reader sees a running server of unknown health.
            ServerCommand::RecordRunning { tools, endpoint } => match self.state {
                S::Starting => {
                    let mut events = vec![E::Running];
                    if let Some(url) = endpoint.filter(|url| Some(url) != self.endpoint.as_ref()) {
                        events.push(E::EndpointPublished { url });
                    }
                    if self.health != Health::Healthy {
                        events.push(E::HealthChanged {
                            health: Health::Healthy,
                        });
                    }
                    if tools != self.tools {
                        events.push(E::ToolsDiscovered { tools });
                    }
                    events
                }
                _ => return Err(refuse()),
            },
            ServerCommand::RecordFailed { reason } => {
                let reason = bounded_reason(reason);
                match self.state {
                    S::Stopped | S::Failed => return Err(refuse()),
                    _ if self.delete_pending => vec![E::Failed { reason }, E::Deleted],
                    _ => vec![E::Failed { reason }],
                }
            }
            ServerCommand::RecordExited { exit_code, reason } => match self.state {
                S::Starting | S::Running => vec![E::Exited {
                    exit_code,
                    reason: bounded_reason(reason),
                }],
                _ => return Err(refuse()),
            },
            ServerCommand::RecordStopped => match self.state {
                S::Stopping if self.delete_pending => vec![E::Stopped, E::Deleted],
                S::Stopping if self.restart_pending && self.enabled => {
                    vec![E::Stopped, E::StartRequested]
                }
                S::Stopping => vec![E::Stopped],
                _ => return Err(refuse()),
            },
            ServerCommand::RecordHealth { health } => {
                if health == self.health {
                    vec![]
                } else {
                    vec![E::HealthChanged { health }]
                }
            }
            ServerCommand::RecordTools { tools } => {
                if tools == self.tools {
                    vec![]
                } else {
                    vec![E::ToolsDiscovered { tools }]
                }
            }
            ServerCommand::Share { sharing } => {
                if self.delete_pending {
                    return Err(refuse_deleting());
                }
                if let Some(e) = sharing.check() {
                    return Err(ServerError::Invalid(vec![e]));
                }
                if sharing == self.sharing {
                    vec![]
                } else {
                    vec![E::SharingChanged { sharing }]
                }
            }
        };
        Ok(events)
    }

    fn decide_create(&self, command: ServerCommand) -> Result<Vec<ServerEvent>, ServerError> {
        let ServerCommand::Create {
            owner,
            catalog_id,
            catalog_version,
            schema,
            name,
            config,
            secrets,
            restart_policy,
        } = command
        else {
            unreachable!("decide_create takes only Create");
        };
        if self.created {
            return Err(ServerError::AlreadyExists);
        }
        let mut v = Violations::default();
        check_name(&mut v, "name", &name);
        let mut errors = v.into_result().err().unwrap_or_default();
        if let Err(more) = validate_config(&schema, &config, &secrets) {
            errors.extend(more);
        }
        errors.extend(check_restart_policy(restart_policy));
        if !errors.is_empty() {
            return Err(ServerError::Invalid(errors));
        }
        Ok(vec![ServerEvent::Created {
            owner,
            catalog_id,
            catalog_version,
            name,
            config,
            secrets,
            restart_policy,
        }])
    }

    fn decide_update(
        &self,
        schema: &[ConfigKey],
        config_changes: BTreeMap<String, ConfigChange<String>>,
        secret_changes: BTreeMap<String, ConfigChange<SealedSecret>>,
    ) -> Result<Vec<ServerEvent>, ServerError> {
        let mut config = self.config.clone();
        let mut secrets = self.secrets.clone();
        let mut changed_keys = Vec::new();
        for (key, change) in config_changes {
            let before = config.get(&key).cloned();
            match change {
                ConfigChange::Set(value) => config.insert(key.clone(), value),
                ConfigChange::Remove => config.remove(&key),
            };
            if config.get(&key) != before.as_ref() {
                changed_keys.push(format!("config.{key}"));
            }
        }
        for (key, change) in secret_changes {
            // Sealed values differ on every seal, so setting a secret always counts as a change.
            let changed = match change {
                ConfigChange::Set(sealed) => {
                    secrets.insert(key.clone(), sealed);
                    true
                }
                ConfigChange::Remove => secrets.remove(&key).is_some(),
            };
            if changed {
                changed_keys.push(format!("secrets.{key}"));
            }
        }
        validate_config(schema, &config, &secrets).map_err(ServerError::Invalid)?;
        if changed_keys.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![ServerEvent::ConfigUpdated {
            config,
            secrets,
            changed_keys,
        }])
    }
}

/// Automatic restarts are bounded so a crash loop cannot run forever.
fn check_restart_policy(policy: RestartPolicy) -> Option<FieldError> {
    match policy {
        RestartPolicy::OnFailure { max_retries } if !(1..=100).contains(&max_retries) => Some(
            FieldError::new("restart_policy.max_retries", "must be between 1 and 100"),
        ),
        _ => None,
    }
}

impl Aggregate for Server {
    const TYPE: &'static str = "server";
    type Command = ServerCommand;
    type Event = ServerEvent;
    type Error = ServerError;
    type Services = ();

    handle_by_decide!();

    fn apply(&mut self, event: Self::Event) {
        use ServerEvent as E;
        match event {
            E::Created {
                owner,
                catalog_id,
                catalog_version,
                name,
                config,
                secrets,
                restart_policy,
            } => {
                self.catalog_version = catalog_version;
                self.restart_policy = restart_policy;
                self.created = true;
                self.enabled = true;
                self.owner = owner;
                self.catalog_id = Some(catalog_id);
                self.name = name;
                self.config = config;
                self.secrets = secrets;
            }
            E::ConfigUpdated {
                config, secrets, ..
            } => {
                self.config = config;
                self.secrets = secrets;
            }
            E::Upgraded {
                catalog_version, ..
            } => self.catalog_version = catalog_version,
            E::StartRequested => {
                self.state = ServerState::Pending;
                self.restart_pending = false;
                self.restart_attempts = 0;
            }
            E::RestartPolicyChanged { restart_policy } => self.restart_policy = restart_policy,
            E::RestartedAfterFailure { attempt } => {
                self.state = ServerState::Pending;
                self.restart_attempts = attempt;
            }
            E::Relaunched => {
                self.state = ServerState::Pending;
                self.container_id = None;
                self.node = None;
                self.endpoint = None;
                self.health = Health::Unknown;
            }
            E::ProvisioningBegan => self.state = ServerState::Creating,
            E::ContainerCreated { container_id, node } => {
                self.state = ServerState::Starting;
                self.container_id = Some(container_id);
                self.node = node;
            }
            E::Adopted { node } => self.node = Some(node),
            E::Running => {
                self.state = ServerState::Running;
                self.last_error = None;
            }
            E::EndpointPublished { url } => self.endpoint = Some(url),
            E::Failed { reason } | E::Exited { reason, .. } => {
                self.state = ServerState::Failed;
                self.last_error = Some(reason);
                self.container_id = None;
                self.node = None;
                self.endpoint = None;
                self.restart_pending = false;
                self.health = Health::Unknown;
            }
            E::StopRequested => self.state = ServerState::Stopping,
            E::RestartRequested => {
                self.state = ServerState::Stopping;
                self.restart_pending = true;
            }
            E::Stopped => {
                self.state = ServerState::Stopped;
                self.container_id = None;
                self.node = None;
                self.endpoint = None;
                self.health = Health::Unknown;
            }
            E::Enabled => self.enabled = true,
            E::Disabled => {
                self.enabled = false;
                self.restart_pending = false;
            }
            E::DeletionRequested => {
                self.state = ServerState::Stopping;
                self.delete_pending = true;
                self.restart_pending = false;
            }
            E::Deleted => self.deleted = true,
            E::HealthChanged { health } => self.health = health,
            E::ToolsDiscovered { tools } => self.tools = tools,
            E::SharingChanged { sharing } => self.sharing = sharing,
        }
    }
}
