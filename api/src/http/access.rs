//! Who may see and touch what: the checks handlers make before acting. What a caller may
//! not see answers 404 (exactly as if it did not exist); what it may see but its role
//! does not allow answers 403. The first check always decides sight.

use berth_domain::catalog::{CatalogDefinition, CatalogEntry, CatalogKind, RuntimeSpec};
use berth_domain::user::Role;
use berth_infrastructure::ownership::stream_owner;
use uuid::Uuid;

use crate::http::auth::Principal;
use crate::http::problem::ApiError;
use crate::http::state::AppState;

/// A 404 unless `principal` may see stream `aggregate_type`/`id` (administrators see
/// every stream; others only their own). The store's `stream_owners` decides, so a
/// stream is visible to its owner the moment its first event commits.
pub async fn ensure_visible(
    state: &AppState,
    principal: &Principal,
    aggregate_type: &str,
    id: Uuid,
    not_found: &str,
) -> Result<(), ApiError> {
    if principal.is_admin() {
        return Ok(());
    }
    let client = state.pool.get().await?;
    let owner = stream_owner(&client, aggregate_type, &id.to_string()).await?;
    if principal.may_see(owner.as_deref()) {
        Ok(())
    } else {
        Err(ApiError::NotFound(not_found.into()))
    }
}

/// [`ensure_visible`] for a server, then a 403 unless the caller may operate servers.
pub async fn ensure_operable_server(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    action: &str,
) -> Result<(), ApiError> {
    ensure_visible(state, principal, "server", id, "no server has this id").await?;
    principal.require(Role::Operator, action)
}

/// Whether `principal` may see catalog entry `entry`: predefined and published entries
/// are visible to all, custom ones to their owner and administrators.
pub fn may_see_catalog_entry(principal: &Principal, entry: &CatalogEntry) -> bool {
    principal.is_admin()
        || entry.kind == Some(CatalogKind::Predefined)
        || entry.published
        || principal.may_see(entry.owner.as_deref())
}

/// Catalog entry `id` from its events, or a 404 when it does not exist or the caller may
/// not see it.
pub async fn load_visible_catalog_entry(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
) -> Result<CatalogEntry, ApiError> {
    let entry = state.bus.load_catalog_entry(&id.to_string()).await?;
    if entry.definition.is_none() || entry.removed || !may_see_catalog_entry(principal, &entry) {
        return Err(ApiError::NotFound("no catalog entry has this id".into()));
    }
    Ok(entry)
}

/// Loads catalog entry `id` for a change: a 404 when it does not exist or the caller
/// may not see it, a 403 when it may see but not change it (only administrators change
/// predefined or others' entries; operators change their own custom entries).
pub async fn ensure_catalog_changeable(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    action: &str,
) -> Result<(), ApiError> {
    let entry = load_visible_catalog_entry(state, principal, id).await?;
    if principal.is_admin() {
        return Ok(());
    }
    principal.require(Role::Operator, action)?;
    if principal.may_see(entry.owner.as_deref()) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "{action} needs the admin role: this {} entry is not yours",
            if entry.kind == Some(CatalogKind::Predefined) {
                "predefined"
            } else {
                "published"
            }
        )))
    }
}

/// A 403 unless `principal` may register or change an entry saying `definition`: a
/// `process` entry runs its command on Berth's own host, so only administrators write
/// one. Docker entries are open to operators: the Docker runtime gives every container
/// the same confinement whoever wrote its entry (no host mounts, no host network, no
/// privileges, no capabilities), and an entry cannot ask for more.
pub fn ensure_runtime_allowed(
    principal: &Principal,
    definition: &CatalogDefinition,
) -> Result<(), ApiError> {
    match definition.runtime {
        RuntimeSpec::Process { .. } if !principal.is_admin() => Err(ApiError::Forbidden(
            "entries whose runtime is `process` run commands on Berth's host: only \
             administrators may register or change them"
                .into(),
        )),
        _ => Ok(()),
    }
}
