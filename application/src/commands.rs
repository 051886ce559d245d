//! The command bus: runs commands through cqrs-es with metadata, captures the position
//! of what they wrote, and retries (bounded) when a concurrent writer won the race.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_domain::bulk::BulkOperation;
use berth_domain::catalog::{CatalogEntry, RuntimeKind};
use berth_domain::keyring::KeyRing;
use berth_domain::profile::{Profile, ProfileId};
use berth_domain::server::Server;
use berth_domain::tool_call::ToolCall;
use berth_domain::upcasting::upcasters;
use berth_domain::user::User;
use berth_domain::{AggregateId, BulkId, CatalogEntryId, ServerId, UserId};
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateContext, AggregateError, CqrsFramework, EventStore};

use crate::aggregate_cache::{AggregateCache, CachedStore};
use crate::error::AppError;
use crate::metadata::CommandMetadata;
use crate::new_stream::NewStreamStore;
use crate::ports::SecretCipher;
use crate::receipt::{self, Receipt};

/// How many times a command is tried when it keeps losing optimistic-concurrency races.
pub const MAX_ATTEMPTS: u32 = 8;

/// How many times, since the process started, a command lost an optimistic-concurrency
/// race and was tried again (exported as a metric).
pub static CONFLICT_RETRIES: AtomicU64 = AtomicU64::new(0);

type Store<R, A> = PersistedEventStore<R, A>;
type Cached<R, A> = CachedStore<R, A>;

/// Executes commands on Berth's aggregates. Cheap to share behind an `Arc`.
///
/// Catalog entries, servers and users are kept in memory between commands
/// ([`crate::aggregate_cache`]): a command on them is its append alone.
pub struct CommandBus<R: PersistedEventRepository + Clone> {
    catalog: CqrsFramework<CatalogEntry, Cached<R, CatalogEntry>>,
    servers: CqrsFramework<Server, Cached<R, Server>>,
    bulk: CqrsFramework<BulkOperation, Store<R, BulkOperation>>,
    users: CqrsFramework<User, Cached<R, User>>,
    key_ring: CqrsFramework<KeyRing, Store<R, KeyRing>>,
    tool_calls: CqrsFramework<ToolCall, NewStreamStore<R, ToolCall>>,
    profiles: CqrsFramework<Profile, Cached<R, Profile>>,
    profile_store: Cached<R, Profile>,
    user_store: Cached<R, User>,
    catalog_store: Cached<R, CatalogEntry>,
    pub(crate) server_store: Cached<R, Server>,
    bulk_store: Store<R, BulkOperation>,
    tool_call_store: Store<R, ToolCall>,
    pub(crate) cipher: Arc<dyn SecretCipher>,
    /// Commands that may take away an administrator take turns in this process, so two
    /// of them never both see the other administrator still active.
    pub(crate) administrators_turn: tokio::sync::Mutex<()>,
    /// The runtime kinds servers may be created for; `None` when this bus creates no
    /// servers that will run here (the command line).
    pub(crate) runtimes: Option<Vec<RuntimeKind>>,
}

fn store<R: PersistedEventRepository + Clone, A: Aggregate>(repo: &R) -> Store<R, A> {
    PersistedEventStore::new_event_store(repo.clone()).with_upcasters(upcasters())
}

fn cached<R: PersistedEventRepository + Clone, A: Aggregate + Clone>(
    repo: &R,
    cache: &AggregateCache<A>,
) -> Cached<R, A> {
    CachedStore::new(repo, upcasters, cache.clone())
}

/// Bulk operations record one event per target, so their streams grow past a thousand
/// events, which every command would otherwise load. They are snapshotted after every
/// command: a snapshot every N events could be recorded at the wrong sequence when a
/// command's events straddle the boundary (the repository stores the snapshot at the
/// last event's sequence, though cqrs-es folds in only the events up to the boundary).
fn snapshotted<R: PersistedEventRepository + Clone, A: Aggregate>(repo: &R) -> Store<R, A> {
    PersistedEventStore::new_snapshot_store(repo.clone(), 1).with_upcasters(upcasters())
}

impl<R: PersistedEventRepository + Clone> CommandBus<R> {
    /// A bus writing through `repo`, sealing secrets with `cipher`.
    ///
    /// No queries are registered with the frameworks: cqrs-es would run them in-process
    /// after the commit and drop their errors; read models follow the event feed instead.
    pub fn new(repo: R, cipher: Arc<dyn SecretCipher>) -> Self {
        let catalogs = AggregateCache::default();
        let servers = AggregateCache::default();
        let users = AggregateCache::default();
        let profiles = AggregateCache::default();
        Self {
            catalog: CqrsFramework::new(cached(&repo, &catalogs), vec![], ()),
            servers: CqrsFramework::new(cached(&repo, &servers), vec![], ()),
            bulk: CqrsFramework::new(snapshotted(&repo), vec![], ()),
            users: CqrsFramework::new(cached(&repo, &users), vec![], ()),
            key_ring: CqrsFramework::new(store(&repo), vec![], ()),
            tool_calls: CqrsFramework::new(NewStreamStore::new(store(&repo)), vec![], ()),
            profiles: CqrsFramework::new(cached(&repo, &profiles), vec![], ()),
            profile_store: cached(&repo, &profiles),
            user_store: cached(&repo, &users),
            catalog_store: cached(&repo, &catalogs),
            server_store: cached(&repo, &servers),
            bulk_store: snapshotted(&repo),
            tool_call_store: store(&repo),
            cipher,
            administrators_turn: tokio::sync::Mutex::new(()),
            runtimes: None,
        }
    }

    /// Refuses servers of entries that none of `kinds` runs, when they are created or
    /// upgraded, instead of letting them fail at start.
    pub fn running_on(mut self, kinds: Vec<RuntimeKind>) -> Self {
        self.runtimes = Some(kinds);
        self
    }

    /// Runs a catalog command.
    pub async fn catalog(
        &self,
        id: AggregateId<CatalogEntry>,
        command: <CatalogEntry as Aggregate>::Command,
        metadata: &CommandMetadata,
    ) -> Result<Receipt, AppError> {
        execute(
            &self.catalog,
            &id.to_string(),
            command,
            metadata,
            Some(self.catalog_store.cache()),
        )
        .await
    }

    /// Runs a server command.
    pub async fn server(
        &self,
        id: AggregateId<Server>,
        command: <Server as Aggregate>::Command,
        metadata: &CommandMetadata,
    ) -> Result<Receipt, AppError> {
        execute(
            &self.servers,
            &id.to_string(),
            command,
            metadata,
            Some(self.server_store.cache()),
        )
        .await
    }

    /// Records a tool call on a stream of its own, `call_id` (made for it: the write is
    /// the append alone, with no read before it).
    pub async fn record_tool_call(
        &self,
        call_id: uuid::Uuid,
        record: berth_domain::tool_call::ToolCallRecord,
        metadata: &CommandMetadata,
    ) -> Result<Receipt, AppError> {
        use berth_domain::tool_call::ToolCallCommand;
        execute(
            &self.tool_calls,
            &call_id.to_string(),
            ToolCallCommand::Record(record),
            metadata,
            None,
        )
        .await
    }

    /// Runs a gateway profile command.
    pub async fn profile(
        &self,
        id: ProfileId,
        command: <Profile as Aggregate>::Command,
        metadata: &CommandMetadata,
    ) -> Result<Receipt, AppError> {
        execute(
            &self.profiles,
            &id.to_string(),
            command,
            metadata,
            Some(self.profile_store.cache()),
        )
        .await
    }

    /// Profile `id` as its events say (not defined when it has none).
    pub async fn load_profile(&self, id: ProfileId) -> Result<Profile, AppError> {
        current(&self.profile_store, &id.to_string()).await
    }

    /// Runs a bulk operation command.
    pub async fn bulk(
        &self,
        id: AggregateId<BulkOperation>,
        command: <BulkOperation as Aggregate>::Command,
        metadata: &CommandMetadata,
    ) -> Result<Receipt, AppError> {
        execute(&self.bulk, &id.to_string(), command, metadata, None).await
    }

    /// Runs a user command.
    pub async fn user(
        &self,
        id: AggregateId<User>,
        command: <User as Aggregate>::Command,
        metadata: &CommandMetadata,
    ) -> Result<Receipt, AppError> {
        execute(
            &self.users,
            &id.to_string(),
            command,
            metadata,
            Some(self.user_store.cache()),
        )
        .await
    }

    /// Runs a key ring command.
    pub async fn key_ring(
        &self,
        command: <KeyRing as Aggregate>::Command,
        metadata: &CommandMetadata,
    ) -> Result<Receipt, AppError> {
        let id = berth_domain::keyring::KEY_RING_ID;
        execute(&self.key_ring, id, command, metadata, None).await
    }

    /// The current state of a user, from its events.
    pub async fn load_user(&self, id: UserId) -> Result<User, AppError> {
        current(&self.user_store, &id.to_string()).await
    }

    /// The current state of a bulk operation, from its snapshot and events.
    pub async fn load_bulk(&self, id: BulkId) -> Result<BulkOperation, AppError> {
        load(&self.bulk_store, &id.to_string()).await
    }

    /// A tool call as recorded (no record when there is no such call).
    pub async fn load_tool_call(&self, id: berth_domain::ToolCallId) -> Result<ToolCall, AppError> {
        load(&self.tool_call_store, &id.to_string()).await
    }

    /// The current state of a catalog entry, from its events.
    pub async fn load_catalog_entry(&self, id: CatalogEntryId) -> Result<CatalogEntry, AppError> {
        current(&self.catalog_store, &id.to_string()).await
    }

    /// A catalog entry as this process last knew it, and the sequence it was at; read
    /// from the store only when it is not cached.
    pub(crate) async fn cached_catalog_entry(
        &self,
        id: CatalogEntryId,
    ) -> Result<(CatalogEntry, usize), AppError> {
        self.catalog_store
            .cached_at(&id.to_string())
            .await
            .map_err(AppError::from_aggregate)
    }

    /// The current state of a catalog entry and the sequence it is at.
    pub(crate) async fn current_catalog_entry(
        &self,
        id: CatalogEntryId,
    ) -> Result<(CatalogEntry, usize), AppError> {
        self.catalog_store
            .current(&id.to_string())
            .await
            .map_err(AppError::from_aggregate)
    }

    /// The current state of a server, from its events.
    pub async fn load_server(&self, id: ServerId) -> Result<Server, AppError> {
        current(&self.server_store, &id.to_string()).await
    }

    /// A server as this process last knew it (its cache), without reading the store.
    pub(crate) async fn cached_server(&self, id: ServerId) -> Result<Server, AppError> {
        self.server_store
            .cached(&id.to_string())
            .await
            .map_err(AppError::from_aggregate)
    }

    /// The cipher secrets are sealed with.
    pub fn cipher(&self) -> &dyn SecretCipher {
        self.cipher.as_ref()
    }
}

async fn load<A, ES>(store: &ES, id: &str) -> Result<A, AppError>
where
    A: Aggregate + Clone,
    A::Error: Into<AppError>,
    ES: EventStore<A>,
{
    let mut ctx = store
        .load_aggregate(id)
        .await
        .map_err(AppError::from_aggregate)?;
    Ok(ctx.aggregate().clone())
}

async fn current<R, A>(store: &Cached<R, A>, id: &str) -> Result<A, AppError>
where
    R: PersistedEventRepository + Clone,
    A: Aggregate + Clone,
    A::Error: Into<AppError>,
{
    let (aggregate, _) = store.current(id).await.map_err(AppError::from_aggregate)?;
    Ok(aggregate)
}

async fn execute<A, ES>(
    framework: &CqrsFramework<A, ES>,
    id: &str,
    command: A::Command,
    metadata: &CommandMetadata,
    cache: Option<&AggregateCache<A>>,
) -> Result<Receipt, AppError>
where
    A: Aggregate + Clone,
    A::Command: Clone,
    A::Error: Into<AppError>,
    ES: EventStore<A>,
{
    let map = metadata.to_map();
    let _turn = match cache {
        Some(cache) => Some(cache.turn(id).await),
        None => None,
    };
    let mut attempt = 0;
    // A refusal may come from a cached state another process has moved on from: the
    // command runs once more on the stored state before the refusal is reported.
    let mut recheck = cache;
    loop {
        attempt += 1;
        let (result, position) =
            receipt::capture(framework.execute_with_metadata(id, command.clone(), map.clone()))
                .await;
        match result {
            Ok(()) => return Ok(Receipt { position }),
            Err(AggregateError::UserError(_)) if recheck.is_some() => {
                if let Some(cache) = recheck.take() {
                    cache.invalidate(id);
                }
            }
            Err(AggregateError::AggregateConflict) if attempt < MAX_ATTEMPTS => {
                CONFLICT_RETRIES.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(aggregate_id = id, attempt, "conflict, retrying");
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => return Err(AppError::from_aggregate(e)),
        }
    }
}

/// Short randomised pause so racing writers spread out instead of colliding again.
fn backoff(attempt: u32) -> Duration {
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 5;
    Duration::from_millis(u64::from(attempt) * 2 + jitter)
}
