//! Sharing a server: an administrator lets other users use it through the gateway.
//!
//! Only administrators share, because a shared server runs with its owner's secrets on
//! behalf of other people: that is a decision about the whole installation, not about one
//! user's servers. The people it is shared with reach its tools, resources and prompts
//! through `/mcp` and nothing else: the REST API still shows the server to its owner and
//! administrators only.

use berth_domain::server::{ServerCommand, Sharing};
use berth_domain::user::Role;
use berth_domain::{FieldError, ServerId};
use cqrs_es::persist::PersistedEventRepository;

use crate::access::{ensure_visible, Caller, StreamOwners};
use crate::commands::CommandBus;
use crate::error::AppError;
use crate::metadata::CommandMetadata;
use crate::receipt::Receipt;

/// Replaces who besides its owner may use server `id` through the gateway. Every user
/// named must exist and not be forgotten (422 naming `users[i]` otherwise).
pub async fn share_server<R: PersistedEventRepository + Clone>(
    bus: &CommandBus<R>,
    owners: &dyn StreamOwners,
    caller: &Caller,
    id: ServerId,
    sharing: Sharing,
    metadata: &CommandMetadata,
) -> Result<Receipt, AppError> {
    ensure_visible(owners, caller, id, "no server has this id").await?;
    caller.require(Role::Admin, "sharing a server")?;
    let mut unknown = Vec::new();
    for (i, user_id) in sharing.users.iter().enumerate() {
        let user = bus.load_user((*user_id).into()).await?;
        if user.name.is_none() || user.forgotten {
            unknown.push(FieldError::new(
                format!("users[{i}]"),
                "no user has this id",
            ));
        }
    }
    if !unknown.is_empty() {
        return Err(AppError::Invalid(unknown));
    }
    bus.server(id, ServerCommand::Share { sharing }, metadata)
        .await
}
