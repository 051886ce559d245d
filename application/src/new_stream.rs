//! An event store for streams that are new by construction (their id is made for the
//! command that writes their first event), where loading the stream first would only
//! ever find nothing: it skips that read, so the command is its append alone, and it goes
//! through the group commit like every other. An id used twice still collides on the
//! store's unique key.

use std::collections::HashMap;

use cqrs_es::persist::EventStoreAggregateContext;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};

/// See the module documentation.
pub struct NewStreamStore<R: PersistedEventRepository, A: Aggregate> {
    inner: PersistedEventStore<R, A>,
}

impl<R: PersistedEventRepository, A: Aggregate> NewStreamStore<R, A> {
    /// Writes through `inner`.
    pub fn new(inner: PersistedEventStore<R, A>) -> Self {
        Self { inner }
    }
}

impl<R, A> EventStore<A> for NewStreamStore<R, A>
where
    R: PersistedEventRepository,
    A: Aggregate,
{
    type AC = EventStoreAggregateContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        self.inner.load_events(aggregate_id).await
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<Self::AC, AggregateError<A::Error>> {
        Ok(EventStoreAggregateContext {
            aggregate_id: aggregate_id.to_owned(),
            aggregate: A::default(),
            current_sequence: 0,
            current_snapshot: None,
        })
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: Self::AC,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        self.inner.commit(events, context, metadata).await
    }
}
