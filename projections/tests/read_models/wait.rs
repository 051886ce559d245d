//! Read-your-writes waits, status, and the supervised background runners.

use std::time::Duration;

use berth_application::servers::LifecycleAction;
use berth_projections::{get_server, status, wait_until_reached, PROJECTION_NAMES};

use crate::kit::{definition, meta, Harness};

#[tokio::test]
async fn waits_end_when_the_projection_reaches_the_position_or_time_runs_out() {
    let h = Harness::new().await;
    let catalog = h.register("ann", definition("github", "")).await;
    let (id, position) = h
        .create_server(
            "ann",
            catalog,
            "github-prod",
            &[("ORG", "acme")],
            &[("TOKEN", "t")],
        )
        .await;

    let short = Duration::from_millis(50);
    assert!(!wait_until_reached(&h.pool, "servers", position, short)
        .await
        .unwrap());
    let lagging = status(&h.pool).await.unwrap();
    assert_eq!(lagging.len(), PROJECTION_NAMES.len());
    for (s, name) in lagging.iter().zip(PROJECTION_NAMES) {
        assert_eq!(s.name, name);
        assert_eq!((s.position, s.head), (0, position));
        assert!(s.lag_seconds > 0.0, "{s:?}");
    }

    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let tasks = h.projections.clone().spawn(shutdown);
    let long = Duration::from_secs(10);
    for name in PROJECTION_NAMES {
        assert!(wait_until_reached(&h.pool, name, position, long)
            .await
            .unwrap());
    }
    assert!(get_server(&h.client().await, id).await.unwrap().is_some());
    for s in status(&h.pool).await.unwrap() {
        assert_eq!(
            (s.position, s.head, s.lag_seconds),
            (position, position, 0.0)
        );
    }

    // A write after the runners started is applied by them, woken by the notification.
    let started = h
        .bus
        .server_lifecycle(&meta("ann"), id.into(), LifecycleAction::Start)
        .await
        .unwrap()
        .position
        .unwrap();
    assert!(wait_until_reached(&h.pool, "servers", started, long)
        .await
        .unwrap());
    let v = get_server(&h.client().await, id).await.unwrap().unwrap();
    assert_eq!(v.state, "pending");

    // A position no event has yet is never reached.
    assert!(
        !wait_until_reached(&h.pool, "servers", started + 100, short)
            .await
            .unwrap()
    );

    stop.send(true).unwrap();
    for task in tasks {
        tokio::time::timeout(long, task).await.unwrap().unwrap();
    }
}
