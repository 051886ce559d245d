//! Profiles: the use cases (define, list, remove) and what a profile selects of the
//! directory.
//!
//! A profile holds only servers its owner may use (their own, and those an administrator
//! shared with them): a profile naming any other server would tell its owner that server
//! exists. A server unshared later stays named in the profile but drops out of its view.

use berth_domain::profile::{Profile, ProfileCommand, ProfileId, ProfileServer};
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

/// Defines (or replaces) `caller`'s profile `name`; the caller must be able to use
/// every server it names.
pub async fn define_profile<R: PersistedEventRepository + Clone>(
    bus: &CommandBus<R>,
    caller: &Caller,
    name: &str,
    servers: Vec<ProfileServer>,
    metadata: &CommandMetadata,
) -> Result<Receipt, AppError> {
    caller.require(Role::Operator, "define gateway profiles")?;
    let owner = caller.owner();
    let mut unknown = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let found = bus.load_server(server.server_id.into()).await?;
        let usable = found.created
            && !found.deleted
            && (found.owner == owner || found.sharing.includes(caller.user_id));
        if !usable {
            unknown.push(FieldError::new(
                format!("servers[{i}].server_id"),
                "is neither one of your servers nor shared with you",
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
