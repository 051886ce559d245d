//! The command workload every store is measured with: a config change of a server
//! created from one catalog entry, the commonest write an operator makes.

use std::collections::BTreeMap;

use berth_application::servers::{NewServer, ServerConfigPatch};
use berth_application::{Actor, CommandMetadata};
use berth_domain::catalog::{CatalogDefinition, ConfigKey, Resources, RuntimeSpec, Transport};
use berth_domain::server::{ConfigChange, RestartPolicy, ServerCommand};
use uuid::Uuid;

/// The user every bench command is made by.
pub const USER: &str = "bench";

/// Metadata of one bench command.
pub fn metadata() -> CommandMetadata {
    CommandMetadata::new(Actor::User(USER.into()))
}

/// The catalog entry the bench servers are made from: a Docker stdio server taking a
/// required `ORG` and an optional `LEVEL`.
pub fn definition() -> CatalogDefinition {
    CatalogDefinition {
        name: "bench".into(),
        description: "a server for measuring commands".into(),
        transport: Transport::Stdio,
        // A process entry: the Berth the HTTP figures are measured on runs local
        // processes only, and refuses servers of entries it cannot run.
        runtime: RuntimeSpec::Process {
            command: "true".into(),
            args: vec![],
        },
        config_schema: schema(),
        resources: Resources {
            memory_mb: Some(128),
            cpus: None,
            pids: None,
        },
        gateway: Default::default(),
    }
}

/// The entry's config schema.
pub fn schema() -> Vec<ConfigKey> {
    ["ORG", "LEVEL"]
        .into_iter()
        .map(|key| ConfigKey {
            key: key.into(),
            description: format!("the {key}"),
            required: key == "ORG",
            secret: false,
            default: None,
        })
        .collect()
}

/// A server of `catalog_id`, numbered `n`.
pub fn new_server(catalog_id: Uuid, n: usize) -> NewServer {
    NewServer {
        catalog_id: catalog_id.into(),
        name: format!("bench-{n}"),
        config: BTreeMap::from([("ORG".to_owned(), "berth".to_owned())]),
        secrets: BTreeMap::new(),
        restart_policy: RestartPolicy::Never,
    }
}

/// The value the `n`-th command sets `LEVEL` to: every command changes something.
fn level(n: u64) -> String {
    format!("level-{n:08}")
}

/// The `n`-th config change, as the application takes it.
pub fn patch(n: u64) -> ServerConfigPatch {
    ServerConfigPatch {
        config: BTreeMap::from([("LEVEL".to_owned(), Some(level(n)))]),
        ..ServerConfigPatch::default()
    }
}

/// The `n`-th config change, as the aggregate takes it (what a store without Berth's
/// application layer is sent).
pub fn update_command(n: u64) -> ServerCommand {
    ServerCommand::UpdateConfig {
        schema: schema(),
        config: BTreeMap::from([("LEVEL".to_owned(), ConfigChange::Set(level(n)))]),
        secrets: BTreeMap::new(),
        restart_policy: None,
    }
}
