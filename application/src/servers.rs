//! Server use cases: creation and config changes (which need the catalog entry's schema
//! and sealed secrets), and lifecycle commands.

use std::collections::BTreeMap;

use berth_domain::catalog::{CatalogDefinition, CatalogEntry, RuntimeKind};
use berth_domain::server::{ConfigChange, RestartPolicy, SealedSecret, ServerCommand};
use berth_domain::{CatalogEntryId, FieldError, ServerId};
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;
use secrecy::SecretString;
use uuid::Uuid;

use crate::commands::CommandBus;
use crate::error::AppError;
use crate::metadata::CommandMetadata;
use crate::process_manager::pinned_definition;
use crate::read_guard::{guarded, StreamAt};
use crate::receipt::Receipt;

/// What a caller asks for when creating a server. Secrets arrive in plaintext and are
/// sealed here, before anything is recorded.
#[derive(Debug)]
pub struct NewServer {
    /// The catalog entry to instantiate.
    pub catalog_id: CatalogEntryId,
    /// Its name.
    pub name: String,
    /// Plain configuration.
    pub config: BTreeMap<String, String>,
    /// Secret configuration, in plaintext (never logged: `SecretString`).
    pub secrets: BTreeMap<String, SecretString>,
    /// What to do when it fails.
    pub restart_policy: RestartPolicy,
}

/// A change of some config keys and secrets; `None` removes a key.
#[derive(Debug, Default)]
pub struct ServerConfigPatch {
    /// Plain keys to set or remove.
    pub config: BTreeMap<String, Option<String>>,
    /// Secrets to set or remove.
    pub secrets: BTreeMap<String, Option<SecretString>>,
    /// A new restart policy.
    pub restart_policy: Option<RestartPolicy>,
}

/// A lifecycle request a person may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleAction {
    /// Start.
    Start,
    /// Stop.
    Stop,
    /// Restart.
    Restart,
    /// Enable.
    Enable,
    /// Disable.
    Disable,
    /// Delete.
    Delete,
}

impl LifecycleAction {
    fn command(self) -> ServerCommand {
        match self {
            Self::Start => ServerCommand::Start,
            Self::Stop => ServerCommand::Stop,
            Self::Restart => ServerCommand::Restart,
            Self::Enable => ServerCommand::Enable,
            Self::Disable => ServerCommand::Disable,
            Self::Delete => ServerCommand::Delete,
        }
    }

    /// Parses the name used in paths and bulk requests.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "start" => Self::Start,
            "stop" => Self::Stop,
            "restart" => Self::Restart,
            "enable" => Self::Enable,
            "disable" => Self::Disable,
            "delete" => Self::Delete,
            _ => return None,
        })
    }
}

impl<R: PersistedEventRepository + Clone> CommandBus<R> {
    /// Refuses an entry whose runtime this installation does not have (422 naming
    /// `field`), so its servers are not created only to fail at start.
    fn ensure_runs_here(
        &self,
        definition: &CatalogDefinition,
        field: &'static str,
    ) -> Result<(), AppError> {
        let kind = definition.runtime.kind();
        match &self.runtimes {
            Some(kinds) if !kinds.contains(&kind) => {
                let here: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                let how = match kind {
                    RuntimeKind::Docker => {
                        "no Docker engine answered when Berth started: start it (or let Berth \
                         use its socket) and restart Berth with `--runtime auto`"
                    }
                    RuntimeKind::Process => {
                        "Berth was started with `--runtime docker`: restart it with \
                         `--runtime auto` to run process entries"
                    }
                    RuntimeKind::OpenApi | RuntimeKind::Remote => {
                        "registered APIs and remote servers are reached by Berth itself, \
                         which was started without their runtime"
                    }
                };
                Err(AppError::Invalid(vec![FieldError::new(
                    field,
                    format!(
                        "this catalog entry runs on the {kind} runtime, which this installation \
                         does not have (it runs: {}); {how}",
                        here.join(", ")
                    ),
                )]))
            }
            _ => Ok(()),
        }
    }

    /// Creates a server owned by the caller from a catalog entry.
    #[tracing::instrument(skip_all, fields(catalog_id = %new.catalog_id))]
    pub async fn create_server(
        &self,
        metadata: &CommandMetadata,
        new: NewServer,
    ) -> Result<(ServerId, Receipt), AppError> {
        let entry = self.live_catalog_entry(new.catalog_id).await?;
        let id = ServerId::from_uuid(Uuid::now_v7());
        let owner = metadata.actor.owner_id();
        if !new.secrets.is_empty() {
            self.cipher.prepare(&owner).await?;
        }
        let secrets = new
            .secrets
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.cipher.seal(&owner, id.uuid(), k, v)?)))
            .collect::<Result<BTreeMap<String, SealedSecret>, AppError>>()?;
        let definition = entry
            .definition
            .unwrap_or_else(|| unreachable!("checked live"));
        self.ensure_runs_here(&definition, "catalog_id")?;
        let command = ServerCommand::Create {
            owner,
            catalog_id: new.catalog_id.uuid(),
            catalog_version: entry.version,
            schema: definition.config_schema,
            name: new.name,
            config: new.config,
            secrets,
            restart_policy: new.restart_policy,
        };
        let receipt = self.server(id, command, metadata).await?;
        Ok((id, receipt))
    }

    /// Changes some config keys and secrets of a server.
    #[tracing::instrument(skip_all, fields(server_id = %id))]
    pub async fn update_server_config(
        &self,
        metadata: &CommandMetadata,
        id: ServerId,
        patch: ServerConfigPatch,
    ) -> Result<Receipt, AppError> {
        // The cached state is enough here: the owner and catalog entry never change,
        // and the command itself checks again that the server exists.
        let server = self.cached_server(id).await?;
        if !server.created || server.deleted {
            return Err(berth_domain::server::ServerError::NotFound.into());
        }
        let catalog_id = server.catalog_id.unwrap_or_default();
        let config: BTreeMap<_, _> = patch
            .config
            .into_iter()
            .map(|(k, v)| (k, v.map_or(ConfigChange::Remove, ConfigChange::Set)))
            .collect();
        if patch.secrets.values().any(Option::is_some) {
            self.cipher.prepare(&server.owner).await?;
        }
        let mut secrets = BTreeMap::new();
        for (k, v) in patch.secrets {
            let change = match v {
                Some(plain) => {
                    ConfigChange::Set(self.cipher.seal(&server.owner, id.uuid(), &k, &plain)?)
                }
                None => ConfigChange::Remove,
            };
            secrets.insert(k, change);
        }
        // The entry as this process knows it, confirmed by the append itself: a config
        // change reads nothing before it writes. Only when the entry moved on since (or
        // the server is pinned to a version the cached entry does not have yet) is it
        // read, and the change decided again.
        let (mut entry, mut seen) = self.cached_catalog_entry(catalog_id.into()).await?;
        let mut read_again = false;
        loop {
            let definition = match pinned_definition(&server, &entry) {
                Ok(definition) => definition,
                // The cached entry may predate the version the server is pinned to.
                Err(_) if !read_again => {
                    read_again = true;
                    (entry, seen) = self.current_catalog_entry(catalog_id.into()).await?;
                    continue;
                }
                Err(reason) => {
                    return Err(AppError::Invalid(vec![FieldError::new(
                        "catalog_id",
                        format!("{reason}; the server's config can no longer be changed"),
                    )]))
                }
            };
            let command = ServerCommand::UpdateConfig {
                schema: definition.config_schema.clone(),
                config: config.clone(),
                secrets: secrets.clone(),
                restart_policy: patch.restart_policy,
            };
            let entry_seen = StreamAt {
                aggregate_type: CatalogEntry::TYPE.to_owned(),
                aggregate_id: catalog_id.to_string(),
                sequence: seen,
            };
            match guarded(vec![entry_seen], self.server(id, command, metadata)).await {
                Err(AppError::StaleRead(_)) if !read_again => {
                    read_again = true;
                    (entry, seen) = self.current_catalog_entry(catalog_id.into()).await?;
                }
                decided => return decided,
            }
        }
    }

    /// Moves a server to version `version` of its catalog entry (the newest when `None`);
    /// it runs that version from its next start. Its configuration must satisfy that
    /// version's schema.
    #[tracing::instrument(skip_all, fields(server_id = %id))]
    pub async fn upgrade_server(
        &self,
        metadata: &CommandMetadata,
        id: ServerId,
        version: Option<u32>,
    ) -> Result<Receipt, AppError> {
        let server = self.load_server(id).await?;
        if !server.created || server.deleted {
            return Err(berth_domain::server::ServerError::NotFound.into());
        }
        let catalog_id = server.catalog_id.unwrap_or_default();
        let entry = self.load_catalog_entry(catalog_id.into()).await?;
        if entry.definition.is_none() || entry.removed {
            return Err(AppError::Invalid(vec![FieldError::new(
                "catalog_version",
                "the server's catalog entry was removed",
            )]));
        }
        let catalog_version = version.unwrap_or(entry.version);
        let Some(definition) = entry.definition_at(catalog_version) else {
            return Err(AppError::Invalid(vec![FieldError::new(
                "catalog_version",
                format!(
                    "the catalog entry has versions 1 to {}, not {catalog_version}",
                    entry.version
                ),
            )]));
        };
        self.ensure_runs_here(definition, "catalog_version")?;
        let command = ServerCommand::Upgrade {
            catalog_version,
            schema: definition.config_schema.clone(),
        };
        self.server(id, command, metadata).await
    }

    /// Asks a server to start, stop, restart, enable, disable or be deleted.
    #[tracing::instrument(skip_all, fields(server_id = %id, action = ?action))]
    pub async fn server_lifecycle(
        &self,
        metadata: &CommandMetadata,
        id: ServerId,
        action: LifecycleAction,
    ) -> Result<Receipt, AppError> {
        self.server(id, action.command(), metadata).await
    }

    async fn live_catalog_entry(&self, id: CatalogEntryId) -> Result<CatalogEntry, AppError> {
        let entry = self.load_catalog_entry(id).await?;
        if entry.definition.is_none() || entry.removed {
            return Err(AppError::Invalid(vec![FieldError::new(
                "catalog_id",
                "no catalog entry has this id",
            )]));
        }
        Ok(entry)
    }
}
