//! `CallsProjector`: one row per `ToolCalled` event, written with binary `COPY` (calls
//! are the most frequent events there are).

use berth_domain::tool_call::{ToolCall, ToolCallEvent};
use berth_domain::upcasting::upcasters;
use berth_infrastructure::feed::projector::Projector;
use berth_infrastructure::feed::StoredEvent;
use berth_infrastructure::StoreError;
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use deadpool_postgres::Transaction;
use futures_util::pin_mut;

use crate::blue_green::Rebuildable;
use crate::codec::aggregate_uuid;
use crate::copy_rows::CopyRows;

/// The calls projection's subscription name.
pub const NAME: &str = "calls";

/// The tables this projection owns.
pub const TABLES: &[&str] = &["tool_calls"];

const COPY: &str = "COPY tool_calls (position, call_id, at, server_id, server_name, tool, \
     caller, credential, profile, outcome, error_class, duration_us, arguments_bytes, \
     result_bytes, request_id) FROM STDIN (FORMAT binary)";
const COPY_COLUMNS: i16 = 15;

/// Projects tool calls into `tool_calls`.
pub struct CallsProjector {
    upcasters: Vec<Box<dyn EventUpcaster>>,
}

impl CallsProjector {
    /// A projector decoding events with the domain's upcasters.
    pub fn new() -> Self {
        Self {
            upcasters: upcasters(),
        }
    }
}

impl Default for CallsProjector {
    fn default() -> Self {
        Self::new()
    }
}

impl Rebuildable for CallsProjector {
    const APPEND_ONLY: &'static [&'static str] = &["tool_calls"];
}

fn int8(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Projector for CallsProjector {
    fn name(&self) -> &str {
        NAME
    }

    async fn apply(&self, tx: &Transaction<'_>, events: &[StoredEvent]) -> Result<(), StoreError> {
        let calls: Vec<&StoredEvent> = events
            .iter()
            .filter(|e| e.aggregate_type == ToolCall::TYPE)
            .collect();
        if calls.is_empty() {
            return Ok(());
        }
        let copy = tx.prepare_cached(COPY).await?;
        let sink = tx.copy_in(&copy).await?;
        pin_mut!(sink);
        let mut rows = CopyRows::new(COPY_COLUMNS);
        for stored in calls {
            let call_id = aggregate_uuid(stored)?;
            let ToolCallEvent::Called(call) = stored.decode::<ToolCall>(&self.upcasters)?;
            let meta = stored.meta();
            rows.row()
                .int8(stored.position)
                .uuid(&call_id)
                .timestamptz(&stored.recorded_at)
                .uuid(&call.server_id)
                .text(&call.server_name)?
                .text(&call.tool)?
                .text(&call.owner)?
                .text(&call.credential)?
                .opt_text(call.profile.as_deref())?
                .text(call.outcome.as_str())?
                .opt_text(call.error_class.as_deref())?
                .int8(int8(call.duration_us))
                .int8(int8(call.arguments_bytes))
                .int8(int8(call.result_bytes))
                .opt_text(meta.get("request_id"))?;
            rows.send_full(&mut sink).await?;
        }
        rows.finish(sink).await?;
        Ok(())
    }
}
