//! The identity read model: users with their roles, and API keys as prefix and keyed
//! hash, which is what authenticating a request looks up.

mod projector;
mod query;

pub use projector::{IdentityProjector, NAME, TABLES};
pub use query::{
    find_console_session, find_keys_by_prefix, get_api_key, get_user, list_api_keys, list_users,
    ApiKeyView, KeyCandidate, SessionCandidate, UserView,
};
