//! Who besides its owner may use a server through the gateway.
//!
//! Sharing grants use of the server's tools, resources and prompts through the MCP
//! gateway, nothing more: the server stays its owner's to configure, start and stop, and
//! the people it is shared with never see its configuration or secrets.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::FieldError;

/// The most users one server may be shared with by name; beyond that, share it with
/// everyone.
pub const MAX_SHARED_USERS: usize = 1000;

/// Who may use a server through the gateway besides its owner.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sharing {
    /// Every user of this Berth may.
    #[serde(default)]
    pub everyone: bool,
    /// These users may (by id, so a name given again to someone else grants nothing).
    #[serde(default)]
    pub users: BTreeSet<Uuid>,
}

impl Sharing {
    /// Whether the user `user_id` may use the server (its owner always may).
    pub fn includes(&self, user_id: Uuid) -> bool {
        self.everyone || self.users.contains(&user_id)
    }

    /// Whether it is shared with nobody.
    pub fn is_private(&self) -> bool {
        !self.everyone && self.users.is_empty()
    }

    /// What is wrong with it, if anything.
    pub(crate) fn check(&self) -> Option<FieldError> {
        (self.users.len() > MAX_SHARED_USERS).then(|| {
            FieldError::new(
                "users",
                format!("at most {MAX_SHARED_USERS} users; share it with everyone instead"),
            )
        })
    }
}
