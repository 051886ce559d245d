//! Who is calling, as the gateway carries it from the HTTP request into the SDK.

use std::sync::Arc;

use berth_application::metadata::CommandMetadata;
use berth_domain::profile::Profile;
use rmcp::model::{ErrorData, Extensions};

use crate::http::auth::Principal;

/// The authenticated caller of one HTTP request, put into the request's extensions
/// before it is handed to the SDK.
#[derive(Debug, Clone)]
pub(crate) struct GatewayCaller {
    pub principal: Principal,
    /// The metadata of what the request records (its request id among them).
    pub metadata: CommandMetadata,
    /// The profile the request came through (`/mcp/p/{name}`), as it was then.
    pub profile: Option<Arc<Profile>>,
}

impl GatewayCaller {
    /// The caller of the request whose SDK extensions are `extensions`.
    pub fn of(extensions: &Extensions) -> Result<Self, ErrorData> {
        extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<GatewayCaller>())
            .cloned()
            .ok_or_else(|| {
                ErrorData::invalid_request("the request carries no Berth credential", None)
            })
    }

    /// The owner name of the caller's servers (`user:NAME`).
    pub fn owner(&self) -> String {
        self.principal.owner()
    }

    /// The profile's name, if the request came through one.
    pub fn profile_name(&self) -> Option<&str> {
        self.profile.as_deref().map(|p| p.name.as_str())
    }

    /// The same user with the same credential, through the same profile.
    pub fn same_as(&self, other: &GatewayCaller) -> bool {
        self.principal.caller.user_id == other.principal.caller.user_id
            && self.principal.credential.key_id() == other.principal.credential.key_id()
            && self.profile_name() == other.profile_name()
    }
}
