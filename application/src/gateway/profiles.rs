//! Profiles: the use cases (define, list, remove) and what a profile selects of the
//! directory.
//!
//! A profile holds only its owner's own servers: the gateway lists nobody else's, and a
//! profile naming another user's server would tell its owner that server exists.

use berth_domain::profile::{Profile, ProfileCommand, ProfileId, ProfileServer};
use berth_domain::server::Server;
use berth_domain::user::Role;
use berth_domain::FieldError;
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;

use super::directory::{Listing, Selection};
use crate::access::{Caller, StreamOwners};
use crate::commands::CommandBus;
use crate::error::AppError;
use crate::metadata::CommandMetadata;
use crate::receipt::Receipt;

impl Selection for Profile {
    fn includes_server(&self, listing: &Listing) -> bool {
        self.server(listing.server_id).is_some()
    }

    fn includes_tool(&self, listing: &Listing, tool: &str) -> bool {
        self.server(listing.server_id)
            .is_some_and(|s| s.includes_tool(tool))
    }
}

/// Defines (or replaces) `caller`'s profile `name`; every server must be the caller's.
pub async fn define_profile<R: PersistedEventRepository + Clone>(
    bus: &CommandBus<R>,
    owners: &dyn StreamOwners,
    caller: &Caller,
    name: &str,
    servers: Vec<ProfileServer>,
    metadata: &CommandMetadata,
) -> Result<Receipt, AppError> {
    caller.require(Role::Operator, "define gateway profiles")?;
    let owner = caller.owner();
    let mut unknown = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let found = owners.owner(Server::TYPE, server.server_id).await?;
        if found.as_deref() != Some(owner.as_str()) {
            unknown.push(FieldError::new(
                format!("servers[{i}].server_id"),
                "is not one of your servers",
            ));
        }
    }
    if !unknown.is_empty() {
        return Err(AppError::Profile(
            berth_domain::profile::ProfileError::Invalid(unknown),
        ));
    }
    bus.profile(
        ProfileId::of(&owner, name),
        ProfileCommand::Define {
            owner,
            name: name.to_owned(),
            servers,
        },
        metadata,
    )
    .await
}

/// `caller`'s profile `name`, or `None` when it has none by that name.
pub async fn find_profile<R: PersistedEventRepository + Clone>(
    bus: &CommandBus<R>,
    caller: &Caller,
    name: &str,
) -> Result<Option<Profile>, AppError> {
    let profile = bus
        .load_profile(ProfileId::of(&caller.owner(), name))
        .await?;
    Ok(profile.defined.then_some(profile))
}

/// Every profile of `caller`'s, by name.
pub async fn list_profiles<R: PersistedEventRepository + Clone>(
    bus: &CommandBus<R>,
    owners: &dyn StreamOwners,
    caller: &Caller,
) -> Result<Vec<Profile>, AppError> {
    let mut profiles = Vec::new();
    for id in owners.streams_of(&caller.owner(), Profile::TYPE).await? {
        let profile = bus.load_profile(id.into()).await?;
        if profile.defined {
            profiles.push(profile);
        }
    }
    profiles.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(profiles)
}

/// Removes `caller`'s profile `name`.
pub async fn remove_profile<R: PersistedEventRepository + Clone>(
    bus: &CommandBus<R>,
    caller: &Caller,
    name: &str,
    metadata: &CommandMetadata,
) -> Result<Receipt, AppError> {
    caller.require(Role::Operator, "remove gateway profiles")?;
    bus.profile(
        ProfileId::of(&caller.owner(), name),
        ProfileCommand::Remove,
        metadata,
    )
    .await
}
