//! `BulkProjector`: applies a batch of bulk operation events with a handful of
//! array statements, whatever the batch's size: new operations and their targets,
//! targets' outcomes, the operations' counts, and completions, in that order (which is
//! the order of any one operation's events).

use std::collections::HashMap;

use berth_domain::bulk::{BulkEvent, BulkOperation};
use berth_domain::upcasting::upcasters;
use berth_infrastructure::feed::projector::Projector;
use berth_infrastructure::feed::StoredEvent;
use berth_infrastructure::StoreError;
use chrono::{DateTime, Utc};
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use deadpool_postgres::Transaction;
use uuid::Uuid;

use crate::blue_green::Rebuildable;
use crate::codec::aggregate_uuid;

/// The bulk operations projection's subscription name.
pub const NAME: &str = "bulk";

/// The tables this projection owns (rebuilt, switched and reset together).
pub const TABLES: &[&str] = &["bulk_operations", "bulk_targets"];

const INSERT_OPERATIONS: &str = "INSERT INTO bulk_operations \
     (id, operation, state, requested_by, total, created_at, updated_at, position) \
     SELECT id, operation, 'running', requested_by, total, at, at, position \
     FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int4[], $5::timestamptz[], $6::int8[]) \
     AS t(id, operation, requested_by, total, at, position)";

const INSERT_TARGETS: &str = "INSERT INTO bulk_targets (bulk_id, ordinal, server_id) \
     SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::uuid[])";

const RECORD_OUTCOMES: &str = "UPDATE bulk_targets t SET outcome = u.outcome, error = u.error \
     FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[]) \
     AS u(bulk_id, server_id, outcome, error) \
     WHERE t.bulk_id = u.bulk_id AND t.server_id = u.server_id";

const ADD_COUNTS: &str = "UPDATE bulk_operations b SET succeeded = b.succeeded + u.succeeded, \
     failed = b.failed + u.failed, updated_at = u.at, position = u.position \
     FROM UNNEST($1::uuid[], $2::int4[], $3::int4[], $4::timestamptz[], $5::int8[]) \
     AS u(id, succeeded, failed, at, position) WHERE b.id = u.id";

const COMPLETE: &str = "UPDATE bulk_operations b SET state = u.state, completed_at = u.at, \
     updated_at = u.at, position = u.position \
     FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::int8[]) \
     AS u(id, state, at, position) WHERE b.id = u.id";

/// Projects bulk operation events into `bulk_operations` and `bulk_targets`.
pub struct BulkProjector {
    upcasters: Vec<Box<dyn EventUpcaster>>,
}

impl BulkProjector {
    /// A projector decoding events with the domain's upcasters.
    pub fn new() -> Self {
        Self {
            upcasters: upcasters(),
        }
    }
}

impl Default for BulkProjector {
    fn default() -> Self {
        Self::new()
    }
}

impl Rebuildable for BulkProjector {}

/// A batch's changes, as column arrays for the statements above.
#[derive(Default)]
struct Changes {
    op_id: Vec<Uuid>,
    op_operation: Vec<String>,
    op_requested_by: Vec<String>,
    op_total: Vec<i32>,
    op_at: Vec<DateTime<Utc>>,
    op_position: Vec<i64>,
    target_bulk: Vec<Uuid>,
    target_ordinal: Vec<i32>,
    target_server: Vec<Uuid>,
    outcome_bulk: Vec<Uuid>,
    outcome_server: Vec<Uuid>,
    outcome: Vec<&'static str>,
    outcome_error: Vec<Option<String>>,
    // Per operation: (succeeded, failed, time and position of its last outcome).
    counts: HashMap<Uuid, (i32, i32, DateTime<Utc>, i64)>,
    done_id: Vec<Uuid>,
    done_state: Vec<&'static str>,
    done_at: Vec<DateTime<Utc>>,
    done_position: Vec<i64>,
}

impl Changes {
    fn add(&mut self, id: Uuid, event: BulkEvent, stored: &StoredEvent) {
        let (at, position) = (stored.recorded_at, stored.position);
        match event {
            BulkEvent::Began {
                operation,
                server_ids,
                requested_by,
            } => {
                self.op_id.push(id);
                self.op_operation.push(operation.as_str().to_string());
                self.op_requested_by.push(requested_by);
                self.op_total
                    .push(i32::try_from(server_ids.len()).unwrap_or(i32::MAX));
                self.op_at.push(at);
                self.op_position.push(position);
                for (ordinal, server_id) in (1..).zip(server_ids) {
                    self.target_bulk.push(id);
                    self.target_ordinal.push(ordinal);
                    self.target_server.push(server_id);
                }
            }
            BulkEvent::TargetSucceeded { server_id } => {
                self.outcome(id, server_id, "succeeded", None, at, position);
            }
            BulkEvent::TargetFailed { server_id, error } => {
                self.outcome(id, server_id, "failed", Some(error), at, position);
            }
            BulkEvent::Completed { state, .. } => {
                self.done_id.push(id);
                self.done_state.push(state.as_str());
                self.done_at.push(at);
                self.done_position.push(position);
            }
        }
    }

    fn outcome(
        &mut self,
        id: Uuid,
        server_id: Uuid,
        outcome: &'static str,
        error: Option<String>,
        at: DateTime<Utc>,
        position: i64,
    ) {
        let failed = error.is_some();
        self.outcome_bulk.push(id);
        self.outcome_server.push(server_id);
        self.outcome.push(outcome);
        self.outcome_error.push(error);
        let counts = self.counts.entry(id).or_insert((0, 0, at, position));
        if failed {
            counts.1 += 1;
        } else {
            counts.0 += 1;
        }
        (counts.2, counts.3) = (at, position);
    }

    async fn write(self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if !self.op_id.is_empty() {
            let statement = tx.prepare_cached(INSERT_OPERATIONS).await?;
            tx.execute(
                &statement,
                &[
                    &self.op_id,
                    &self.op_operation,
                    &self.op_requested_by,
                    &self.op_total,
                    &self.op_at,
                    &self.op_position,
                ],
            )
            .await?;
            let statement = tx.prepare_cached(INSERT_TARGETS).await?;
            tx.execute(
                &statement,
                &[&self.target_bulk, &self.target_ordinal, &self.target_server],
            )
            .await?;
        }
        if !self.outcome_bulk.is_empty() {
            let statement = tx.prepare_cached(RECORD_OUTCOMES).await?;
            tx.execute(
                &statement,
                &[
                    &self.outcome_bulk,
                    &self.outcome_server,
                    &self.outcome,
                    &self.outcome_error,
                ],
            )
            .await?;
            let mut ids = Vec::with_capacity(self.counts.len());
            let mut succeeded = Vec::with_capacity(self.counts.len());
            let mut failed = Vec::with_capacity(self.counts.len());
            let mut at = Vec::with_capacity(self.counts.len());
            let mut position = Vec::with_capacity(self.counts.len());
            for (id, (s, f, t, p)) in self.counts {
                ids.push(id);
                succeeded.push(s);
                failed.push(f);
                at.push(t);
                position.push(p);
            }
            let statement = tx.prepare_cached(ADD_COUNTS).await?;
            tx.execute(&statement, &[&ids, &succeeded, &failed, &at, &position])
                .await?;
        }
        if !self.done_id.is_empty() {
            let statement = tx.prepare_cached(COMPLETE).await?;
            tx.execute(
                &statement,
                &[
                    &self.done_id,
                    &self.done_state,
                    &self.done_at,
                    &self.done_position,
                ],
            )
            .await?;
        }
        Ok(())
    }
}

impl Projector for BulkProjector {
    fn name(&self) -> &str {
        NAME
    }

    async fn apply(&self, tx: &Transaction<'_>, events: &[StoredEvent]) -> Result<(), StoreError> {
        let mut changes = Changes::default();
        for stored in events
            .iter()
            .filter(|e| e.aggregate_type == BulkOperation::TYPE)
        {
            let id = aggregate_uuid(stored)?;
            changes.add(id, stored.decode::<BulkOperation>(&self.upcasters)?, stored);
        }
        changes.write(tx).await
    }
}
