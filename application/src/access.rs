//! Who may see and do what: the rules every edge (REST, live streams, the command line,
//! the gateway) asks, so none of them decides on its own.
//!
//! What a caller may not see is answered as if it did not exist ([`AppError::Hidden`]);
//! what it may see but its role does not allow is [`AppError::Forbidden`]. Sight is
//! always decided first.

use async_trait::async_trait;
use berth_domain::catalog::{CatalogDefinition, CatalogEntry, CatalogKind, RuntimeSpec};
use berth_domain::user::{owner_of, Role};
use berth_domain::{AggregateId, CatalogEntryId, ServerId};
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;
use uuid::Uuid;

use crate::commands::CommandBus;
use crate::error::AppError;
use crate::metadata::Actor;

/// A verified caller: a user, with the role it has now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The actor recorded on the commands they send (`user:NAME`).
    pub actor: Actor,
    /// The user's id.
    pub user_id: Uuid,
    /// The user's name.
    pub name: String,
    /// What the user may do.
    pub role: Role,
}

impl Caller {
    /// The owner string of what this caller creates and may see (`user:NAME`).
    pub fn owner(&self) -> String {
        owner_of(&self.name)
    }

    /// Administrators see and manage everything.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// `None` for administrators (no filter), else the caller's owner string: what lists,
    /// streams and exports are narrowed to.
    pub fn owner_filter(&self) -> Option<String> {
        (!self.is_admin()).then(|| self.owner())
    }

    /// Whether the caller may see something owned by `owner` (`None`: owned by no user).
    pub fn may_see(&self, owner: Option<&str>) -> bool {
        // Compared without building `user:NAME`: this runs per event per live subscriber.
        self.is_admin() || owner.and_then(|o| o.strip_prefix("user:")) == Some(self.name.as_str())
    }

    /// Forbidden unless the caller's role is at least `role`; `action` says what was
    /// refused.
    pub fn require(&self, role: Role, action: &str) -> Result<(), AppError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "{action} needs the {role} role; this caller is a {}",
                self.role
            )))
        }
    }

    /// Whether the caller may see catalog entry `entry`: predefined and published entries
    /// are visible to all, custom ones to their owner and administrators.
    pub fn may_see_catalog_entry(&self, entry: &CatalogEntry) -> bool {
        self.is_admin()
            || entry.kind == Some(CatalogKind::Predefined)
            || entry.published
            || self.may_see(entry.owner.as_deref())
    }

    /// Forbidden unless the caller may change `entry`, which it may see: administrators
    /// change any entry, operators only their own custom ones.
    pub fn ensure_may_change(&self, entry: &CatalogEntry, action: &str) -> Result<(), AppError> {
        if self.is_admin() {
            return Ok(());
        }
        self.require(Role::Operator, action)?;
        if self.may_see(entry.owner.as_deref()) {
            return Ok(());
        }
        let kind = if entry.kind == Some(CatalogKind::Predefined) {
            "predefined"
        } else {
            "published"
        };
        Err(AppError::Forbidden(format!(
            "{action} needs the admin role: this {kind} entry is not yours"
        )))
    }

    /// Forbidden unless the caller may register or change an entry saying `definition`:
    /// a `process` entry runs its command on Berth's own host, so only administrators
    /// write one. Docker entries are open to operators: the Docker runtime gives every
    /// container the same confinement whoever wrote its entry (no host mounts, network
    /// or privileges, no capabilities), and an entry cannot ask for more.
    pub fn ensure_runtime_allowed(&self, definition: &CatalogDefinition) -> Result<(), AppError> {
        match definition.runtime {
            RuntimeSpec::Process { .. } if !self.is_admin() => Err(AppError::Forbidden(
                "entries whose runtime is `process` run commands on Berth's host: only \
                 administrators may register or change them"
                    .into(),
            )),
            _ => Ok(()),
        }
    }
}

/// Who owns each stream: the store records it with the stream's first event.
#[async_trait]
pub trait StreamOwners: Send + Sync {
    /// The owner (`user:NAME`) of stream `aggregate_type`/`id`, `None` when no user owns
    /// it or it does not exist.
    async fn owner(&self, aggregate_type: &str, id: Uuid) -> Result<Option<String>, AppError>;

    /// The ids of `owner`'s streams of `aggregate_type`.
    async fn streams_of(&self, owner: &str, aggregate_type: &str) -> Result<Vec<Uuid>, AppError>;
}

/// Hidden (`not_found` says what, as for something missing) unless `caller` may see
/// the stream of aggregate `id`: administrators see every stream, others only their
/// own, from the moment its first event commits.
pub async fn ensure_visible<A: Aggregate>(
    owners: &dyn StreamOwners,
    caller: &Caller,
    id: AggregateId<A>,
    not_found: &str,
) -> Result<(), AppError> {
    if caller.is_admin() {
        return Ok(());
    }
    let owner = owners.owner(A::TYPE, id.uuid()).await?;
    if caller.may_see(owner.as_deref()) {
        Ok(())
    } else {
        Err(AppError::Hidden(not_found.into()))
    }
}

/// [`ensure_visible`] for a server, then forbidden unless the caller may operate servers.
pub async fn ensure_operable_server(
    owners: &dyn StreamOwners,
    caller: &Caller,
    id: ServerId,
    action: &str,
) -> Result<(), AppError> {
    ensure_visible(owners, caller, id, "no server has this id").await?;
    caller.require(Role::Operator, action)
}

impl<R: PersistedEventRepository + Clone> CommandBus<R> {
    /// Catalog entry `id` from its events; hidden when it does not exist, was removed,
    /// or `caller` may not see it.
    pub async fn visible_catalog_entry(
        &self,
        caller: &Caller,
        id: CatalogEntryId,
    ) -> Result<CatalogEntry, AppError> {
        let entry = self.load_catalog_entry(id).await?;
        if entry.definition.is_none() || entry.removed || !caller.may_see_catalog_entry(&entry) {
            return Err(AppError::Hidden("no catalog entry has this id".into()));
        }
        Ok(entry)
    }

    /// Catalog entry `id` for a change by `caller`: hidden as in
    /// [`CommandBus::visible_catalog_entry`], forbidden when it may see but not change it.
    pub async fn changeable_catalog_entry(
        &self,
        caller: &Caller,
        id: CatalogEntryId,
        action: &str,
    ) -> Result<CatalogEntry, AppError> {
        let entry = self.visible_catalog_entry(caller, id).await?;
        caller.ensure_may_change(&entry, action)?;
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(name: &str, role: Role) -> Caller {
        Caller {
            actor: Actor::User(name.into()),
            user_id: Uuid::nil(),
            name: name.into(),
            role,
        }
    }

    #[test]
    fn sight_follows_ownership_and_roles_follow_rank() {
        let ada = caller("ada", Role::Operator);
        assert!(ada.may_see(Some("user:ada")));
        assert!(!ada.may_see(Some("user:adam")));
        assert!(!ada.may_see(None));
        assert!(caller("root", Role::Admin).may_see(Some("user:ada")));
        assert!(ada.require(Role::Operator, "x").is_ok());
        assert!(matches!(
            ada.require(Role::Admin, "x"),
            Err(AppError::Forbidden(_))
        ));
        assert_eq!(ada.owner_filter().as_deref(), Some("user:ada"));
        assert_eq!(caller("root", Role::Admin).owner_filter(), None);
    }
}
