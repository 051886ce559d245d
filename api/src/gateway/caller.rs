//! Who is calling, as the gateway carries it from the HTTP request into the SDK.

use berth_application::metadata::CommandMetadata;
use rmcp::model::{ErrorData, Extensions};

use crate::http::auth::Principal;

/// The authenticated caller of one HTTP request, put into the request's extensions
/// before it is handed to the SDK.
#[derive(Debug, Clone)]
pub(crate) struct GatewayCaller {
    pub principal: Principal,
    /// The metadata of what the request records (its request id among them).
    pub metadata: CommandMetadata,
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

    /// The same user with the same credential.
    pub fn same_as(&self, other: &GatewayCaller) -> bool {
        self.principal.caller.user_id == other.principal.caller.user_id
            && self.principal.credential.key_id() == other.principal.credential.key_id()
    }
}
