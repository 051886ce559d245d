//! Envelope encryption against real PostgreSQL: per-owner data keys survive a master
//! key rotation, forgetting an owner crypto-shreds exactly their secrets, ciphertexts
//! moved between servers never open, and the event log is never touched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_application::ports::{CipherError, SecretCipher};
use berth_application::process_manager::{ProcessManager, ProcessManagerOptions};
use berth_application::runtime::HereOnly;
use berth_application::servers::{LifecycleAction, NewServer};
use berth_application::{Actor, AppError, CommandBus, CommandMetadata};
use berth_domain::catalog::{CatalogDefinition, ConfigKey, Resources, RuntimeSpec, Transport};
use berth_domain::server::ServerState;
use berth_infrastructure::cipher::{MasterKey, MasterKeyCipher};
use berth_infrastructure::envelope::EnvelopeCipher;
use berth_infrastructure::event_store::PostgresEventRepository;
use berth_infrastructure::key_store::{self, Forgotten};
use berth_infrastructure::mcp::{HttpClients, McpSessionPool};
use berth_infrastructure::runtime::ProcessRuntime;
use deadpool_postgres::Pool;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

type Bus = CommandBus<PostgresEventRepository>;

fn bus(pool: &Pool, cipher: Arc<dyn SecretCipher>) -> Arc<Bus> {
    Arc::new(CommandBus::new(
        PostgresEventRepository::new(pool.clone()),
        cipher,
    ))
}

async fn catalog_entry(bus: &Bus) -> Uuid {
    let md = CommandMetadata::new(Actor::admin());
    let (id, _) = bus
        .register_catalog_entry(
            &md,
            CatalogDefinition {
                name: "envelope".into(),
                description: String::new(),
                transport: Transport::Stdio,
                runtime: RuntimeSpec::Process {
                    command: "true".into(),
                    args: vec![],
                },
                config_schema: vec![ConfigKey {
                    key: "TOKEN".into(),
                    description: String::new(),
                    required: false,
                    secret: true,
                    default: None,
                }],
                resources: Resources::default(),
                gateway: Default::default(),
            },
        )
        .await
        .unwrap();
    id.uuid()
}

async fn create(bus: &Bus, catalog_id: Uuid, user: &str, name: &str, token: &str) -> Uuid {
    let md = CommandMetadata::new(Actor::User(user.into()));
    let (id, _) = bus
        .create_server(
            &md,
            NewServer {
                catalog_id: catalog_id.into(),
                name: name.into(),
                config: BTreeMap::new(),
                secrets: BTreeMap::from([("TOKEN".to_owned(), SecretString::from(token))]),
                restart_policy: Default::default(),
            },
        )
        .await
        .unwrap();
    id.uuid()
}

/// Opens server `id`'s `TOKEN` through `cipher`, as the launch would.
async fn open_token(bus: &Bus, cipher: &dyn SecretCipher, id: Uuid) -> Result<String, CipherError> {
    let server = bus.load_server(id.into()).await.unwrap();
    cipher.prepare(&server.owner).await?;
    cipher
        .open(&server.owner, id, "TOKEN", &server.secrets["TOKEN"])
        .map(|s| s.expose_secret().to_owned())
}

async fn events_text(pool: &Pool) -> Vec<String> {
    let client = pool.get().await.unwrap();
    client
        .query("SELECT e::text FROM events e ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_secrets_forgetting_shreds_one_owner_and_events_never_change() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(4).unwrap();
    let old = MasterKey::generate();
    let old_masters = MasterKeyCipher::new(old.clone());

    // A secret sealed directly under the master key, as before data keys existed.
    let legacy_bus = bus(&pool, Arc::new(old_masters.clone()));
    let catalog_id = catalog_entry(&legacy_bus).await;
    let legacy = create(&legacy_bus, catalog_id, "bob", "bob-legacy", "bob-old").await;

    let running = Arc::new(EnvelopeCipher::new(pool.clone(), old_masters.clone()));
    let bus_before = bus(&pool, running.clone());
    let a1 = create(&bus_before, catalog_id, "alice", "a1", "alice-1").await;
    let a2 = create(&bus_before, catalog_id, "alice", "a2", "alice-2").await;
    let b1 = create(&bus_before, catalog_id, "bob", "b1", "bob-1").await;
    let expected = [
        (a1, "alice-1"),
        (a2, "alice-2"),
        (b1, "bob-1"),
        (legacy, "bob-old"),
    ];
    let a1_server = bus_before.load_server(a1.into()).await.unwrap();
    assert!(a1_server.secrets["TOKEN"].key_id.starts_with("dk-"));
    let legacy_server = bus_before.load_server(legacy.into()).await.unwrap();
    assert_eq!(legacy_server.secrets["TOKEN"].key_id, old.id());
    let events_before = events_text(&pool).await;

    // Rotate: every data key re-wrapped, every secret (new and legacy) still opens.
    let new = MasterKey::generate();
    let rewrapped = key_store::rewrap_all(&pool, &old_masters, &new)
        .await
        .unwrap();
    assert_eq!(rewrapped, 2, "one data key per owner");
    let rotated: Arc<dyn SecretCipher> = Arc::new(EnvelopeCipher::new(
        pool.clone(),
        MasterKeyCipher::new(new.clone()).with_retired(old.clone()),
    ));
    for (id, token) in expected {
        let opened = open_token(&bus_before, rotated.as_ref(), id).await;
        assert_eq!(opened.unwrap(), token);
    }
    // Without the retired key only the legacy secret is lost; with the old key alone,
    // no data key unwraps any more.
    let new_only = EnvelopeCipher::new(pool.clone(), MasterKeyCipher::new(new.clone()));
    assert_eq!(
        open_token(&bus_before, &new_only, b1).await.unwrap(),
        "bob-1"
    );
    assert!(matches!(
        open_token(&bus_before, &new_only, legacy).await,
        Err(CipherError::UnknownKey(id)) if id == old.id()
    ));
    let old_only = EnvelopeCipher::new(pool.clone(), old_masters.clone());
    assert!(matches!(
        open_token(&bus_before, &old_only, b1).await,
        Err(CipherError::UnknownKey(id)) if id == new.id()
    ));
    // A process that loaded its keys before the rotation keeps working.
    assert_eq!(
        open_token(&bus_before, running.as_ref(), a1).await.unwrap(),
        "alice-1"
    );

    // Forget alice: exactly her secrets become unreadable, for every cipher.
    let alice_key = a1_server.secrets["TOKEN"].key_id.clone();
    let forgotten = key_store::forget(&pool, "user:alice").await.unwrap();
    assert_eq!(forgotten, Forgotten::Destroyed(alice_key.clone()));
    assert_eq!(
        key_store::forget(&pool, "user:alice").await.unwrap(),
        Forgotten::AlreadyDestroyed(alice_key.clone())
    );
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT wrapped_key IS NULL AND wrap_nonce IS NULL AND destroyed_at IS NOT NULL \
             FROM owner_data_keys WHERE owner = 'user:alice'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the wrapped key is wiped");
    for cipher in [rotated.as_ref(), running.as_ref() as &dyn SecretCipher] {
        for id in [a1, a2] {
            match open_token(&bus_before, cipher, id).await {
                Err(e @ CipherError::Destroyed { .. }) => {
                    let shown = e.to_string();
                    assert!(shown.contains(&alice_key) && shown.contains("crypto-shredded"));
                }
                other => panic!("alice's secret must not open: {other:?}"),
            }
        }
        assert_eq!(open_token(&bus_before, cipher, b1).await.unwrap(), "bob-1");
        assert_eq!(
            open_token(&bus_before, cipher, legacy).await.unwrap(),
            "bob-old"
        );
    }
    assert_eq!(
        events_text(&pool).await,
        events_before,
        "rotate and forget never touch the event log"
    );

    // Nothing new is sealed for a forgotten owner.
    let bus_after = bus(&pool, rotated.clone());
    let refused = bus_after
        .create_server(
            &CommandMetadata::new(Actor::User("alice".into())),
            NewServer {
                catalog_id: catalog_id.into(),
                name: "a3".into(),
                config: BTreeMap::new(),
                secrets: BTreeMap::from([("TOKEN".to_owned(), SecretString::from("x"))]),
                restart_policy: Default::default(),
            },
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(AppError::Cipher(CipherError::Destroyed { .. }))
        ),
        "{refused:?}"
    );

    // Starting alice's server fails with a reason naming the destroyed key.
    let logs = tempfile::tempdir().unwrap();
    let runtime: Arc<dyn berth_application::runtime::ContainerRuntime> =
        Arc::new(ProcessRuntime::new(logs.path().to_owned()));
    let pm = ProcessManager::new(
        bus_after.clone(),
        runtime.clone(),
        McpSessionPool::new(runtime, Arc::new(HereOnly), HttpClients::default()),
        ProcessManagerOptions {
            probe_timeout: Duration::from_secs(5),
            stop_grace: Duration::from_secs(1),
            ..ProcessManagerOptions::default()
        },
    );
    let md = CommandMetadata::new(Actor::User("alice".into()));
    bus_after
        .server_lifecycle(&md, a1.into(), LifecycleAction::Start)
        .await
        .unwrap();
    pm.reconcile(a1, &md).await.unwrap();
    let failed = bus_after.load_server(a1.into()).await.unwrap();
    assert_eq!(failed.state, ServerState::Failed);
    let reason = failed.last_error.unwrap_or_default();
    assert!(
        reason.contains("TOKEN") && reason.contains(&alice_key) && reason.contains("destroyed"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ciphertext_moved_to_another_server_never_opens() {
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(4).unwrap();
    let cipher = Arc::new(EnvelopeCipher::new(
        pool.clone(),
        MasterKeyCipher::new(MasterKey::generate()),
    ));
    let bus = bus(&pool, cipher.clone());
    let catalog_id = catalog_entry(&bus).await;
    let a1 = create(&bus, catalog_id, "alice", "a1", "alice-1").await;
    let a2 = create(&bus, catalog_id, "alice", "a2", "alice-2").await;
    let b1 = create(&bus, catalog_id, "bob", "b1", "bob-1").await;
    let sealed_a1 = bus.load_server(a1.into()).await.unwrap().secrets["TOKEN"].clone();
    cipher.prepare("user:alice").await.unwrap();
    cipher.prepare("user:bob").await.unwrap();

    // Same owner, same data key, another server: the associated data differs.
    assert!(matches!(
        cipher.open("user:alice", a2, "TOKEN", &sealed_a1),
        Err(CipherError::Tampered)
    ));
    // Another owner's server: bob's data key is not the one named.
    assert!(matches!(
        cipher.open("user:bob", b1, "TOKEN", &sealed_a1),
        Err(CipherError::UnknownKey(k)) if k == sealed_a1.key_id
    ));
    // Even relabelled with bob's key id, it does not open under bob's key.
    let mut relabelled = sealed_a1.clone();
    relabelled.key_id = bus.load_server(b1.into()).await.unwrap().secrets["TOKEN"]
        .key_id
        .clone();
    assert!(matches!(
        cipher.open("user:bob", b1, "TOKEN", &relabelled),
        Err(CipherError::Tampered)
    ));
    // Another key name of the right server.
    assert!(matches!(
        cipher.open("user:alice", a1, "OTHER", &sealed_a1),
        Err(CipherError::Tampered)
    ));
    assert_eq!(
        cipher
            .open("user:alice", a1, "TOKEN", &sealed_a1)
            .unwrap()
            .expose_secret(),
        "alice-1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_rotates_the_key_file_and_forgets_a_user() {
    if std::env::var_os(berth_infrastructure::cipher::MASTER_KEY_ENV).is_some() {
        return; // this test exercises the key file, which the variable overrides
    }
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(4).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = berth_api::cli::config::Settings {
        data_dir: dir.path().to_owned(),
        database_url: Some(db.url()),
        ..Default::default()
    };
    let key_file = dir.path().join("master.key");
    let old = MasterKey::from_file(&key_file).unwrap();
    let cipher = Arc::new(EnvelopeCipher::new(
        pool.clone(),
        MasterKeyCipher::new(old.clone()),
    ));
    let bus = bus(&pool, cipher);
    let catalog_id = catalog_entry(&bus).await;
    let a1 = create(&bus, catalog_id, "alice", "a1", "alice-1").await;
    let b1 = create(&bus, catalog_id, "bob", "b1", "bob-1").await;

    berth_api::cli::keys::rotate_master(&settings, None)
        .await
        .unwrap();
    let current = MasterKey::from_file(&key_file).unwrap();
    assert_ne!(current.id(), old.id(), "master.key holds the new key");
    let retired = MasterKey::load_retired(dir.path()).unwrap();
    assert_eq!(retired.len(), 1);
    assert_eq!(retired[0].id(), old.id());
    assert!(!dir.path().join("master.key.next").exists());
    // What `berth serve` would build now opens everything.
    let served = EnvelopeCipher::new(pool.clone(), MasterKeyCipher::new(current));
    assert_eq!(open_token(&bus, &served, a1).await.unwrap(), "alice-1");
    assert_eq!(open_token(&bus, &served, b1).await.unwrap(), "bob-1");

    berth_api::cli::keys::forget_user(&settings, "alice")
        .await
        .unwrap();
    assert!(matches!(
        open_token(&bus, &served, a1).await,
        Err(CipherError::Destroyed { owner, .. }) if owner == "user:alice"
    ));
    assert_eq!(open_token(&bus, &served, b1).await.unwrap(), "bob-1");
}
