//! Building what the runtime needs to create a server: its catalog entry's image or
//! command, and its environment with secrets opened at this moment only.

use std::collections::BTreeMap;

use berth_domain::catalog::{CatalogDefinition, CatalogEntry};
use berth_domain::server::Server;
use secrecy::SecretString;
use uuid::Uuid;

use crate::ports::SecretCipher;
use crate::runtime::LaunchSpec;

/// The version of `entry` that `server` runs: the one it was created from or upgraded
/// to, never a later one it was not moved to. Or why there is none.
pub fn pinned_definition<'a>(
    server: &Server,
    entry: &'a CatalogEntry,
) -> Result<&'a CatalogDefinition, String> {
    if entry.definition.is_none() || entry.removed {
        return Err("its catalog entry was removed".into());
    }
    entry.definition_at(server.catalog_version).ok_or_else(|| {
        format!(
            "its catalog entry has no version {}",
            server.catalog_version
        )
    })
}

/// The launch spec of `server`, or a reason a person can act on why there is none.
/// Defaults from the schema fill keys the server does not set.
pub fn launch_spec(
    id: Uuid,
    server: &Server,
    entry: &CatalogEntry,
    cipher: &dyn SecretCipher,
) -> Result<LaunchSpec, String> {
    let definition = pinned_definition(server, entry)?;
    let mut env: BTreeMap<String, SecretString> = BTreeMap::new();
    for key in &definition.config_schema {
        if let Some(default) = &key.default {
            env.insert(key.key.clone(), SecretString::from(default.clone()));
        }
    }
    for (k, v) in &server.config {
        env.insert(k.clone(), SecretString::from(v.clone()));
    }
    for (k, sealed) in &server.secrets {
        let plain = cipher
            .open(&server.owner, id, k, sealed)
            .map_err(|e| format!("its secret `{k}` cannot be opened: {e}"))?;
        env.insert(k.clone(), plain);
    }
    Ok(LaunchSpec {
        server_id: id,
        owner: server.owner.clone(),
        name: server.name.clone(),
        transport: definition.transport,
        runtime: definition.runtime.clone(),
        env,
        resources: definition.resources.clone(),
    })
}
