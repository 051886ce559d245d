//! A server's [`Listing`] as the store has it now, or `None` when the gateway must not
//! offer it: not running, unhealthy, deleted, or its entry gone. An error when its
//! secrets cannot be read to redact its answers (the listing is left as it was).

use std::sync::Arc;
use std::time::Duration;

use berth_domain::server::{Health, ServerState};
use berth_domain::ServerId;
use cqrs_es::persist::PersistedEventRepository;

use super::directory::{Listing, DEFAULT_CALL_TIMEOUT};
use crate::commands::CommandBus;
use crate::error::AppError;
use crate::process_manager::pinned_definition;

/// See the module documentation.
pub async fn listing_of<R: PersistedEventRepository + Clone>(
    bus: &CommandBus<R>,
    id: ServerId,
) -> Result<Option<Listing>, AppError> {
    let server = bus.load_server(id).await?;
    let offered = server.created
        && !server.deleted
        && server.state == ServerState::Running
        && server.health != Health::Unhealthy;
    let Some(catalog_id) = server.catalog_id.filter(|_| offered) else {
        return Ok(None);
    };
    let entry = bus.load_catalog_entry(catalog_id.into()).await?;
    let Ok(definition) = pinned_definition(&server, &entry) else {
        return Ok(None);
    };
    let redactor = bus.redactor_of(&server, id.uuid()).await?;
    Ok(Some(Listing {
        server_id: id.uuid(),
        owner: server.owner.clone(),
        name: server.name.clone(),
        transport: definition.transport,
        tools: server.tools.clone(),
        call_timeout: definition
            .gateway
            .call_timeout_secs
            .map_or(DEFAULT_CALL_TIMEOUT, |secs| {
                Duration::from_secs(u64::from(secs))
            }),
        sharing: server.sharing.clone(),
        keep_arguments: definition.gateway.keep_arguments,
        redactor: Arc::new(redactor),
    }))
}
