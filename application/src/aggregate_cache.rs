//! Aggregates kept in memory between commands, so a command costs its append alone
//! instead of reading its whole stream first.
//!
//! Commands on one aggregate take turns inside the process ([`AggregateCache::turn`]),
//! so writers in one process never race each other; they only race other processes.
//!
//! Why it stays correct when other processes write the same streams:
//! - A command decided on a stale cached state appends at a sequence that is already
//!   taken; the store's unique key refuses it, the entry is marked unverified and the
//!   command bus tries again on the stored state (the cached one plus the events
//!   recorded after it).
//! - A command that records nothing (or is refused) may have been decided on a stale
//!   state too: a no-op is confirmed against the store before it is reported (see
//!   [`CachedStore::commit`]), and the bus runs a refused command once more on the
//!   stored state before reporting the refusal.
//! - Reads for decisions outside a command ([`CachedStore::current`]) fetch the events
//!   recorded after the cached sequence, so they are never stale; they cost one small
//!   query whatever the stream's length.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as TurnLock, OwnedMutexGuard};

use berth_domain::upcasting::upcast;
use cqrs_es::persist::{
    EventStoreAggregateContext, EventUpcaster, PersistedEventRepository, PersistedEventStore,
};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};

/// How many aggregates of one type are kept. Past it the cache starts over: a simple
/// bound, and the next command of each aggregate reads its stream once.
pub const CAPACITY: usize = 10_000;

/// A state the aggregate really had at `sequence`; `verified` while nothing says the
/// store has moved past it.
struct Cached<A> {
    aggregate: A,
    sequence: usize,
    verified: bool,
}

type Turns = HashMap<String, Arc<TurnLock<()>>>;

/// The aggregates of one type, shared by the stores that use them.
pub struct AggregateCache<A> {
    entries: Arc<Mutex<HashMap<String, Cached<A>>>>,
    turns: Arc<Mutex<Turns>>,
}

impl<A> Clone for AggregateCache<A> {
    fn clone(&self) -> Self {
        Self {
            entries: Arc::clone(&self.entries),
            turns: Arc::clone(&self.turns),
        }
    }
}

impl<A> Default for AggregateCache<A> {
    fn default() -> Self {
        Self {
            entries: Arc::new(Mutex::new(HashMap::new())),
            turns: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// The right to run a command on one aggregate; the next waiting command goes when it
/// is dropped.
pub struct Turn {
    turns: Arc<Mutex<Turns>>,
    id: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        // Only the map holds it: nobody waits, so the entry goes (the map stays small).
        if turns
            .get(&self.id)
            .is_some_and(|t| Arc::strong_count(t) == 1)
        {
            turns.remove(&self.id);
        }
    }
}

impl<A: Clone> AggregateCache<A> {
    /// Waits for this process's turn to run a command on aggregate `id`.
    pub async fn turn(&self, id: &str) -> Turn {
        let lock = {
            let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(turns.entry(id.to_owned()).or_default())
        };
        Turn {
            turns: Arc::clone(&self.turns),
            id: id.to_owned(),
            guard: Some(lock.lock_owned().await),
        }
    }

    /// The cached state of `id`, if it may be used as the stored one.
    fn verified(&self, id: &str) -> Option<(A, usize)> {
        self.lock()
            .get(id)
            .filter(|c| c.verified)
            .map(|c| (c.aggregate.clone(), c.sequence))
    }

    /// The cached state of `id`, verified or not: a state it had at that sequence.
    fn any(&self, id: &str) -> Option<(A, usize)> {
        self.lock()
            .get(id)
            .map(|c| (c.aggregate.clone(), c.sequence))
    }

    /// Keeps `aggregate` at `sequence` as the stored state, unless a newer state of it
    /// is kept already (a slower task finishing after a faster one).
    fn put(&self, id: &str, aggregate: A, sequence: usize) {
        let mut entries = self.lock();
        if entries.get(id).is_some_and(|c| c.sequence > sequence) {
            return;
        }
        if entries.len() >= CAPACITY && !entries.contains_key(id) {
            entries.clear();
        }
        entries.insert(
            id.to_owned(),
            Cached {
                aggregate,
                sequence,
                verified: true,
            },
        );
    }

    /// Marks the cached state of `id` as possibly behind the store: its next use
    /// reads the events recorded after it first.
    pub fn invalidate(&self, id: &str) {
        if let Some(c) = self.lock().get_mut(id) {
            c.verified = false;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached<A>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An event store serving aggregates from an [`AggregateCache`] and keeping it current
/// with what it commits; everything it writes goes through cqrs-es's
/// `PersistedEventStore` unchanged.
pub struct CachedStore<R: PersistedEventRepository, A: Aggregate> {
    inner: PersistedEventStore<R, A>,
    repo: R,
    upcasters: Vec<Box<dyn EventUpcaster>>,
    cache: AggregateCache<A>,
}

impl<R, A> CachedStore<R, A>
where
    R: PersistedEventRepository + Clone,
    A: Aggregate + Clone,
{
    /// A store over `repo` reading events through `upcasters`, using `cache`.
    /// `make_upcasters` is called twice: the inner store and the incremental reads each
    /// own a chain.
    pub fn new(
        repo: &R,
        make_upcasters: impl Fn() -> Vec<Box<dyn EventUpcaster>>,
        cache: AggregateCache<A>,
    ) -> Self {
        Self {
            inner: PersistedEventStore::new_event_store(repo.clone())
                .with_upcasters(make_upcasters()),
            repo: repo.clone(),
            upcasters: make_upcasters(),
            cache,
        }
    }

    /// The cache it uses.
    pub fn cache(&self) -> &AggregateCache<A> {
        &self.cache
    }

    /// The stored state of aggregate `id`: the cached one brought up to date with the
    /// events recorded after it.
    pub async fn current(&self, id: &str) -> Result<(A, usize), AggregateError<A::Error>> {
        let (mut aggregate, mut sequence) = self.cache.any(id).unwrap_or_default();
        let newer = self.repo.get_last_events::<A>(id, sequence).await?;
        for serialized in newer {
            let envelope = EventEnvelope::<A>::try_from(upcast(&self.upcasters, serialized))?;
            sequence = envelope.sequence;
            aggregate.apply(envelope.payload);
        }
        if sequence > 0 {
            self.cache.put(id, aggregate.clone(), sequence);
        }
        Ok((aggregate, sequence))
    }

    /// The cached state of `id` when there is one, else the stored state. Only for
    /// facts that never change once recorded (an owner, a catalog entry's id), or
    /// for checks the command itself repeats.
    pub async fn cached(&self, id: &str) -> Result<A, AggregateError<A::Error>> {
        Ok(self.cached_at(id).await?.0)
    }

    /// The cached state of `id` and the sequence it is at when there is one, else the
    /// stored state: for a command that has its append confirm that sequence
    /// ([`crate::read_guard`]).
    pub async fn cached_at(&self, id: &str) -> Result<(A, usize), AggregateError<A::Error>> {
        match self.cache.any(id) {
            Some(cached) => Ok(cached),
            None => self.current(id).await,
        }
    }
}

impl<R, A> EventStore<A> for CachedStore<R, A>
where
    R: PersistedEventRepository + Clone,
    A: Aggregate + Clone,
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
        let (aggregate, current_sequence) = match self.cache.verified(aggregate_id) {
            Some(cached) => cached,
            None => self.current(aggregate_id).await?,
        };
        Ok(EventStoreAggregateContext {
            aggregate_id: aggregate_id.to_owned(),
            aggregate,
            current_sequence,
            current_snapshot: None,
        })
    }

    /// Commits through the inner store and keeps the new state. A command that
    /// recorded nothing is reported only once the store confirms no event came after
    /// the state it was decided on; otherwise it is a conflict, tried again.
    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: Self::AC,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let id = context.aggregate_id.clone();
        let sequence = context.current_sequence;
        if events.is_empty() {
            let newer = self.repo.get_last_events::<A>(&id, sequence).await?;
            if newer.is_empty() {
                return Ok(Vec::new());
            }
            self.cache.invalidate(&id);
            return Err(AggregateError::AggregateConflict);
        }
        let mut aggregate = context.aggregate.clone();
        match self.inner.commit(events, context, metadata).await {
            Ok(envelopes) => {
                for envelope in &envelopes {
                    aggregate.apply(envelope.payload.clone());
                }
                self.cache.put(&id, aggregate, sequence + envelopes.len());
                Ok(envelopes)
            }
            Err(e) => {
                self.cache.invalidate(&id);
                Err(e)
            }
        }
    }
}
