//! Sharing a server: an administrator lets other users use it through the gateway.
//!
//! Only administrators share, because a shared server runs with its owner's secrets on
//! behalf of other people: that is a decision about the whole installation, not about one
//! user's servers. The people it is shared with reach its tools, resources and prompts
//! through `/mcp` and nothing else: the REST API still shows the server to its owner and
//! administrators only.

use berth_domain::server::{ServerCommand, Sharing, MAX_SHARED_USERS};
use berth_domain::user::Role;
use berth_domain::{FieldError, ServerId};
use cqrs_es::persist::PersistedEventRepository;
use uuid::Uuid;

use crate::access::{ensure_visible, Caller, StreamOwners};
use crate::commands::CommandBus;
use crate::error::AppError;
use crate::metadata::CommandMetadata;
use crate::receipt::Receipt;

/// Replaces who besides its owner may use server `id` through the gateway: everyone, or
/// `users` (as sent: a 422 names `users[i]` by its place there). Every user named must
/// exist and not be forgotten.
pub async fn share_server<R: PersistedEventRepository + Clone>(
    bus: &CommandBus<R>,
    owners: &dyn StreamOwners,
    caller: &Caller,
    id: ServerId,
    everyone: bool,
    users: Vec<Uuid>,
    metadata: &CommandMetadata,
) -> Result<Receipt, AppError> {
    ensure_visible(owners, caller, id, "no server has this id").await?;
    caller.require(Role::Admin, "sharing a server")?;
    if users.len() > MAX_SHARED_USERS {
        return Err(AppError::Invalid(vec![FieldError::new(
            "users",
            format!("at most {MAX_SHARED_USERS} users; share it with everyone instead"),
        )]));
    }
    let mut unknown = Vec::new();
    for (i, user_id) in users.iter().enumerate() {
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
    let sharing = Sharing {
        everyone,
        users: users.into_iter().collect(),
    };
    bus.server(id, ServerCommand::Share { sharing }, metadata)
        .await
}
