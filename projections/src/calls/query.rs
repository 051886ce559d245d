//! Reading the tool calls projection.

use berth_infrastructure::StoreError;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::page::{Filters, ListQuery, Page, PageRequest};

/// Which calls to list. Absent fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// The tool, as its server names it.
    pub tool: Option<String>,
    /// The caller (`user:NAME`).
    pub caller: Option<String>,
    /// `ok`, `tool_error` or `failed`.
    pub outcome: Option<String>,
    /// Calls at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Calls before this time.
    pub to: Option<DateTime<Utc>>,
}

/// One call through the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CallView {
    /// The global position of its event.
    pub position: i64,
    /// Its id (its event stream's).
    pub id: Uuid,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The server called.
    pub server_id: Uuid,
    /// Its name then.
    pub server_name: String,
    /// The tool, as the server names it.
    pub tool: String,
    /// Who called (`user:NAME`).
    pub caller: String,
    /// The API key the call came with (`token:<key id>` for a token of it).
    pub credential: String,
    /// The profile it went through, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// `ok`, `tool_error` (the tool answered `isError`) or `failed` (no answer).
    pub outcome: String,
    /// For a failed call: `timeout`, `closed`, `unreachable`, `upstream_error`,
    /// `protocol`, `circuit_open`, `busy`, `rate_limited` or `cancelled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// How long it took, in microseconds.
    pub duration_us: i64,
    /// Size of the arguments sent, in bytes.
    pub arguments_bytes: i64,
    /// Size of the answer, in bytes.
    pub result_bytes: i64,
    /// The request that made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

const COLUMNS: &str = "position, call_id, at, server_id, server_name, tool, caller, \
     credential, profile, outcome, error_class, duration_us, arguments_bytes, result_bytes, \
     request_id";

const LIST: ListQuery = ListQuery {
    columns: COLUMNS,
    from: "tool_calls",
    order: "position DESC",
};

fn view(row: &Row) -> Result<CallView, StoreError> {
    Ok(CallView {
        position: row.try_get(0)?,
        id: row.try_get(1)?,
        at: row.try_get(2)?,
        server_id: row.try_get(3)?,
        server_name: row.try_get(4)?,
        tool: row.try_get(5)?,
        caller: row.try_get(6)?,
        credential: row.try_get(7)?,
        profile: row.try_get(8)?,
        outcome: row.try_get(9)?,
        error_class: row.try_get(10)?,
        duration_us: row.try_get(11)?,
        arguments_bytes: row.try_get(12)?,
        result_bytes: row.try_get(13)?,
        request_id: row.try_get(14)?,
    })
}

/// The calls to `server_id` matching `filter`, newest first.
pub async fn list_calls(
    client: &impl GenericClient,
    server_id: Uuid,
    filter: &CallFilter,
    page: PageRequest,
) -> Result<Page<CallView>, StoreError> {
    let mut filters = Filters::default();
    filters.push("server_id = $?", Some(server_id));
    filters.push("tool = $?", filter.tool.clone());
    filters.push("caller = $?", filter.caller.clone());
    filters.push("outcome = $?", filter.outcome.clone());
    filters.push("at >= $?", filter.from);
    filters.push("at < $?", filter.to);
    LIST.run(client, &filters, page, view).await
}
