//! What every read-model test needs: a migrated database, the real event store and
//! command bus, and the projections reading from it.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_application::servers::NewServer;
use berth_application::{Actor, CommandBus, CommandMetadata};
use berth_domain::catalog::{CatalogDefinition, ConfigKey, Resources, RuntimeSpec, Transport};
use berth_infrastructure::cipher::{MasterKey, MasterKeyCipher};
use berth_infrastructure::event_store::PostgresEventRepository;
use berth_projections::{PageRequest, Projections};
use berth_tests::TestDatabase;
use deadpool_postgres::{Object, Pool};
use secrecy::SecretString;
use uuid::Uuid;

/// One test's world.
pub struct Harness {
    pub pool: Pool,
    pub bus: CommandBus<PostgresEventRepository>,
    pub projections: Arc<Projections>,
    // Last, so the database is dropped after everything connected to it.
    pub db: TestDatabase,
}

impl Harness {
    pub async fn new() -> Self {
        let db = berth_tests::test_database().await;
        let pool = db.database().pool(16).expect("pool");
        let cipher = Arc::new(MasterKeyCipher::new(MasterKey::generate()));
        let bus = CommandBus::new(PostgresEventRepository::new(pool.clone()), cipher);
        let projections = Arc::new(Projections::new(db.database(), pool.clone()));
        Self {
            pool,
            bus,
            projections,
            db,
        }
    }

    pub async fn client(&self) -> Object {
        self.pool.get().await.expect("connection")
    }

    pub async fn catch_up(&self) {
        self.projections.catch_up_all().await.expect("catch up");
    }

    /// Every row of `table` as JSON text, sorted: a comparable picture of the table.
    pub async fn rows(&self, table: &str) -> Vec<String> {
        let sql = format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY 1");
        self.client()
            .await
            .query(&sql, &[])
            .await
            .expect("read table")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Registers a custom entry owned by `user`; returns its id.
    pub async fn register(&self, user: &str, definition: CatalogDefinition) -> Uuid {
        let (id, _) = self
            .bus
            .register_catalog_entry(&meta(user), definition)
            .await
            .expect("register catalog entry");
        id.uuid()
    }

    /// Creates a server of `catalog_id` owned by `user`; returns its id and position.
    pub async fn create_server(
        &self,
        user: &str,
        catalog_id: Uuid,
        name: &str,
        config: &[(&str, &str)],
        secrets: &[(&str, &str)],
    ) -> (Uuid, i64) {
        let new = NewServer {
            catalog_id: catalog_id.into(),
            name: name.into(),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secrets: secrets
                .iter()
                .map(|(k, v)| (k.to_string(), SecretString::from(v.to_string())))
                .collect::<BTreeMap<_, _>>(),
            restart_policy: Default::default(),
        };
        let (id, receipt) = self
            .bus
            .create_server(&meta(user), new)
            .await
            .expect("create server");
        (id.uuid(), receipt.position.expect("created"))
    }
}

/// Metadata of a fresh request by user `name`.
pub fn meta(name: &str) -> CommandMetadata {
    CommandMetadata::new(Actor::User(name.into()))
}

/// Metadata of the process manager acting on behalf of `cause`.
pub fn system(correlation: Option<Uuid>, cause: Option<Uuid>) -> CommandMetadata {
    let mut m = CommandMetadata::new(Actor::System("process-manager".into()));
    m.correlation_id = correlation;
    m.causation_id = cause;
    m
}

fn key(key: &str, required: bool, secret: bool) -> ConfigKey {
    ConfigKey {
        key: key.into(),
        description: format!("the {key}"),
        required,
        secret,
        default: None,
    }
}

/// A stdio Docker entry taking `ORG` (required), `LEVEL`, secret `TOKEN` (required) and
/// secret `WEBHOOK_SECRET`.
pub fn definition(name: &str, description: &str) -> CatalogDefinition {
    CatalogDefinition {
        name: name.into(),
        description: description.into(),
        transport: Transport::Stdio,
        runtime: RuntimeSpec::Docker {
            image: "ghcr.io/berth/fixture:1".into(),
            command: vec![],
            port: None,
        },
        config_schema: vec![
            key("ORG", true, false),
            key("LEVEL", false, false),
            key("TOKEN", true, true),
            key("WEBHOOK_SECRET", false, true),
        ],
        resources: Resources {
            memory_mb: Some(256),
            cpus: Some(0.5),
            pids: None,
        },
        gateway: Default::default(),
    }
}

/// An http process entry without config.
pub fn http_definition(name: &str, description: &str) -> CatalogDefinition {
    CatalogDefinition {
        name: name.into(),
        description: description.into(),
        transport: Transport::Http,
        runtime: RuntimeSpec::Docker {
            image: "mcp/fetch:latest".into(),
            command: vec![],
            port: Some(8080),
        },
        config_schema: vec![],
        resources: Resources::default(),
        gateway: Default::default(),
    }
}

/// Page `n` of `size` items.
pub fn page(n: i64, size: i64) -> PageRequest {
    PageRequest {
        page: n,
        page_size: size,
    }
}
