//! The `User` aggregate: a person or program with a role, its API keys, and the
//! security actions taken on it (tokens issued, keys revoked, disabled, forgotten).

mod aggregate;
mod role;

#[cfg(test)]
mod tests;

pub use aggregate::{
    ApiKeyState, KeyDigest, KeyHashAlgorithm, User, UserCommand, UserError, UserEvent,
};
pub use role::Role;

use uuid::Uuid;

/// The namespace user ids are derived in: a user's id is the UUIDv5 of its name, so a
/// name can be taken once only (two racing creations meet on one stream).
const USER_NAMESPACE: Uuid = Uuid::from_u128(0x6b1e_52a4_3d0f_4b8e_9a57_0c2d_1f6e_8a31);

/// The id of the user named `name`.
pub fn user_id(name: &str) -> crate::UserId {
    crate::UserId::from_uuid(Uuid::new_v5(&USER_NAMESPACE, name.as_bytes()))
}

/// The owner string recorded on what user `name` creates (`user:NAME`).
pub fn owner_of(name: &str) -> String {
    format!("user:{name}")
}
