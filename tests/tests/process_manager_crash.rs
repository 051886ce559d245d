//! A process manager that dies between a runtime action and recording its outcome is
//! repaired by the next one: the action is found done, recorded once, and no duplicate
//! container ever exists. Real Docker, real PostgreSQL.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use berth_application::process_manager::{
    CrashPoint, ProcessManager, ProcessManagerError, ProcessManagerOptions,
};
use berth_application::runtime::HereOnly;
use berth_application::servers::{LifecycleAction, NewServer};
use berth_application::{Actor, CommandBus, CommandMetadata};
use berth_domain::catalog::{CatalogDefinition, Resources, RuntimeSpec, Transport};
use berth_domain::server::ServerState;
use berth_infrastructure::cipher::{MasterKey, MasterKeyCipher};
use berth_infrastructure::event_store::PostgresEventRepository;
use berth_infrastructure::mcp::{HttpClients, McpSessionPool};
use berth_infrastructure::runtime::DockerRuntime;
use berth_tests::docker::{fixture_image, require_docker, ContainerCleanup};
use uuid::Uuid;

fn containers_of(server_id: Uuid) -> usize {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=berth.server_id={server_id}"),
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_any_runtime_action_is_repaired_without_duplicates() {
    if !require_docker() {
        return;
    }
    let image = fixture_image().await;
    let db = berth_tests::test_database().await;
    let pool = db.database().pool(8).unwrap();
    let bus = Arc::new(CommandBus::new(
        PostgresEventRepository::new(pool),
        Arc::new(MasterKeyCipher::new(MasterKey::generate())),
    ));
    let runtime = Arc::new(
        DockerRuntime::connect()
            .unwrap()
            .for_installation(Uuid::new_v4().to_string()),
    );
    let md = CommandMetadata::new(Actor::admin());
    let (catalog_id, _) = bus
        .register_catalog_entry(
            &md,
            CatalogDefinition {
                name: "fixture".into(),
                description: String::new(),
                transport: Transport::Stdio,
                runtime: RuntimeSpec::Docker {
                    image,
                    command: vec![],
                    port: None,
                },
                config_schema: vec![],
                resources: Resources::default(),
                gateway: Default::default(),
            },
        )
        .await
        .unwrap();
    let pm_with = |crash_after| {
        ProcessManager::new(
            bus.clone(),
            runtime.clone(),
            McpSessionPool::new(runtime.clone(), Arc::new(HereOnly), HttpClients::default()),
            ProcessManagerOptions {
                probe_timeout: Duration::from_secs(10),
                stop_grace: Duration::from_secs(2),
                crash_after,
                ..ProcessManagerOptions::default()
            },
        )
    };
    let healthy = pm_with(None);

    for point in [CrashPoint::Create, CrashPoint::Start, CrashPoint::Stop] {
        let (id, _) = bus
            .create_server(
                &md,
                NewServer {
                    catalog_id,
                    name: format!("crash-{point:?}").to_lowercase(),
                    config: BTreeMap::new(),
                    secrets: BTreeMap::new(),
                    restart_policy: Default::default(),
                },
            )
            .await
            .unwrap();
        let _cleanup = ContainerCleanup::new(format!("berth-{id}"));
        bus.server_lifecycle(&md, id, LifecycleAction::Start)
            .await
            .unwrap();
        let crashing = pm_with(Some(point));
        if point == CrashPoint::Stop {
            healthy.reconcile(id.uuid(), &md).await.unwrap();
            bus.server_lifecycle(&md, id, LifecycleAction::Stop)
                .await
                .unwrap();
        }

        let crash = crashing.reconcile(id.uuid(), &md).await;
        assert!(
            matches!(crash, Err(ProcessManagerError::InjectedCrash(p)) if p == point),
            "{point:?}: {crash:?}"
        );
        let before = bus.load_server(id).await.unwrap();
        let expected_after_crash = match point {
            CrashPoint::Create => ServerState::Creating,
            CrashPoint::Start => ServerState::Starting,
            CrashPoint::Stop => ServerState::Stopping,
        };
        assert_eq!(
            before.state, expected_after_crash,
            "{point:?}: the outcome was not recorded"
        );
        let expected_containers = usize::from(point != CrashPoint::Stop);
        assert_eq!(
            containers_of(id.uuid()),
            expected_containers,
            "{point:?}: the action itself happened"
        );

        // The next process manager repairs it: same container, outcome recorded once.
        healthy.reconcile(id.uuid(), &md).await.unwrap();
        let after = bus.load_server(id).await.unwrap();
        let expected = if point == CrashPoint::Stop {
            ServerState::Stopped
        } else {
            ServerState::Running
        };
        assert_eq!(after.state, expected, "{point:?}");
        assert_eq!(
            containers_of(id.uuid()),
            usize::from(point != CrashPoint::Stop),
            "{point:?}: no duplicate"
        );
        if point == CrashPoint::Start {
            assert_eq!(
                after.container_id, before.container_id,
                "the crashed attempt's container was kept"
            );
        }
        // Reconciling again changes nothing.
        healthy.reconcile(id.uuid(), &md).await.unwrap();
        assert_eq!(bus.load_server(id).await.unwrap(), after);
        bus.server_lifecycle(&md, id, LifecycleAction::Delete)
            .await
            .unwrap();
        healthy.reconcile(id.uuid(), &md).await.unwrap();
        assert_eq!(containers_of(id.uuid()), 0);
    }
}
