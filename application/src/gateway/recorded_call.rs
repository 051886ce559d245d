//! One recorded tool call, as its caller (or an administrator) reads it back: with its
//! arguments opened when its server's entry kept them.

use berth_domain::tool_call::{ToolCallRecord, ARGUMENTS_KEY};
use berth_domain::ToolCallId;
use cqrs_es::persist::PersistedEventRepository;
use secrecy::ExposeSecret;

use crate::access::{ensure_visible, Caller, StreamOwners};
use crate::commands::CommandBus;
use crate::error::AppError;
use crate::ports::CipherError;

/// What became of a call's arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum KeptArguments {
    /// Its entry did not keep them: only their digest and size are known.
    NotKept,
    /// Kept, and opened: the JSON object that was sent.
    Kept(serde_json::Value),
    /// Kept, but their caller was forgotten and the data key they were sealed under is
    /// destroyed: they can never be read again.
    Shredded,
}

/// A recorded call and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    /// What was recorded.
    pub record: ToolCallRecord,
    /// Its arguments, when kept.
    pub arguments: KeptArguments,
}

/// Call `id`, hidden unless `caller` made it or is an administrator. The owner of a
/// shared server lists calls to it, but reads no one else's arguments.
pub async fn recorded_call<R: PersistedEventRepository + Clone>(
    bus: &CommandBus<R>,
    owners: &dyn StreamOwners,
    caller: &Caller,
    id: ToolCallId,
) -> Result<RecordedCall, AppError> {
    const HIDDEN: &str = "no tool call has this id";
    ensure_visible(owners, caller, id, HIDDEN).await?;
    let Some(mut record) = bus.load_tool_call(id).await?.record else {
        return Err(AppError::Hidden(HIDDEN.into()));
    };
    let arguments = match record.arguments.take() {
        None => KeptArguments::NotKept,
        Some(sealed) => {
            let cipher = bus.cipher();
            let opened = match cipher.prepare(&record.owner).await {
                Ok(()) => cipher.open(&record.owner, id.uuid(), ARGUMENTS_KEY, &sealed),
                Err(e) => Err(e),
            };
            match opened {
                Ok(text) => KeptArguments::Kept(
                    serde_json::from_str(text.expose_secret()).unwrap_or_default(),
                ),
                Err(CipherError::Destroyed { .. }) => KeptArguments::Shredded,
                Err(e) => return Err(e.into()),
            }
        }
    };
    Ok(RecordedCall { record, arguments })
}
