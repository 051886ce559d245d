//! Reading the audit trail: pages newest first, and batches oldest first for exports.

use berth_infrastructure::StoreError;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::page::{Filters, ListQuery, Page, PageRequest};

/// Which audit entries to read. Absent fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Who acted, as recorded (`user:ann`, `system:process-manager`).
    pub actor: Option<String>,
    /// Entries about this server.
    pub server_id: Option<Uuid>,
    /// The action, e.g. `server.start_requested`.
    pub action: Option<String>,
    /// At or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Strictly before this time.
    pub to: Option<DateTime<Utc>>,
    /// Entries of one unit of work (e.g. a bulk operation).
    pub correlation_id: Option<Uuid>,
    /// Only entries about streams this owner owns (`stream_owners`).
    pub owner: Option<String>,
}

/// One event of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditEntry {
    /// The event's global position.
    pub position: i64,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// Who acted (`user:NAME`, `system:NAME`, or `unknown`).
    pub actor: String,
    /// `<target_type>.<event>`, e.g. `server.start_requested`.
    pub action: String,
    /// The aggregate type acted on (`server`, `catalog_entry`, ...).
    pub target_type: String,
    /// The aggregate's id.
    pub target_id: String,
    /// What happened, in one line.
    pub summary: String,
    /// The request that caused it.
    pub request_id: Option<String>,
    /// The unit of work it belongs to.
    pub correlation_id: Option<String>,
    /// The event that caused it (process-manager commands).
    pub causation_id: Option<String>,
    /// The event itself: `/api/v1/events/{position}`.
    pub event: String,
}

/// Where the API serves the event at `position`.
pub fn event_link(position: i64) -> String {
    format!("/api/v1/events/{position}")
}

macro_rules! columns {
    () => {
        "position, at, actor, action, target_type, target_id, summary, request_id, \
         correlation_id, causation_id"
    };
}

const LIST: ListQuery = ListQuery {
    columns: columns!(),
    from: "audit_log",
    order: "position DESC",
};

fn entry(row: &Row) -> Result<AuditEntry, StoreError> {
    let position = row.try_get("position")?;
    Ok(AuditEntry {
        position,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target_type: row.try_get("target_type")?,
        target_id: row.try_get("target_id")?,
        summary: row.try_get("summary")?,
        request_id: row.try_get("request_id")?,
        correlation_id: row.try_get("correlation_id")?,
        causation_id: row.try_get("causation_id")?,
        event: event_link(position),
    })
}

fn filters(filter: &AuditFilter) -> Filters {
    let mut f = Filters::default();
    f.push("actor = $?", filter.actor.clone());
    f.push(
        "target_type = 'server' AND target_id = $?",
        filter.server_id.map(|id| id.to_string()),
    );
    f.push("action = $?", filter.action.clone());
    f.push("at >= $?", filter.from);
    f.push("at < $?", filter.to);
    f.push(
        "correlation_id = $?",
        filter.correlation_id.map(|id| id.to_string()),
    );
    f.push(
        "EXISTS (SELECT 1 FROM stream_owners o WHERE o.aggregate_type = audit_log.target_type \
         AND o.aggregate_id = audit_log.target_id AND o.owner = $?)",
        filter.owner.clone(),
    );
    f
}

/// Up to this many entries of a time window are read and sorted outright rather than
/// found walking back from the newest entry (see `ListQuery::run_counted`): some tens
/// of milliseconds at most, where the walk may pass every entry since the window.
const FEW_IN_WINDOW: i64 = 50_000;

/// Audit entries matching `filter`, newest first.
pub async fn list_audit(
    client: &impl GenericClient,
    filter: &AuditFilter,
    page: PageRequest,
) -> Result<Page<AuditEntry>, StoreError> {
    let filters = filters(filter);
    if filter.from.is_some() || filter.to.is_some() {
        LIST.run_counted(client, &filters, page, FEW_IN_WINDOW, entry)
            .await
    } else {
        LIST.run(client, &filters, page, entry).await
    }
}

/// Up to `limit` entries matching `filter` with a position after `after_position`,
/// oldest first: an export reads batch after batch, passing the last position it got,
/// in constant memory.
pub async fn audit_batch(
    client: &impl GenericClient,
    filter: &AuditFilter,
    after_position: i64,
    limit: i64,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut f = filters(filter);
    f.push("position > $?", Some(after_position));
    let sql = format!(
        concat!(
            "SELECT ",
            columns!(),
            " FROM audit_log{} ORDER BY position LIMIT ${}"
        ),
        f.sql(),
        f.next_placeholder()
    );
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &f.params(&[&limit])).await?;
    rows.iter().map(entry).collect()
}
