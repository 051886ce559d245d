//! Given/when/then tests of bulk operations: beginning (validation, repeats,
//! idempotent re-begin) and recording outcomes until the operation completes.

use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::*;
use crate::FieldError;

type Given = TestFramework<BulkOperation>;
use BulkEvent as E;

const ADMIN: &str = "user:admin";

fn ids(n: u128) -> Vec<Uuid> {
    (1..=n).map(Uuid::from_u128).collect()
}

fn begin(operation: BulkAction, server_ids: Vec<Uuid>) -> BulkCommand {
    BulkCommand::Begin {
        operation,
        server_ids,
        requested_by: ADMIN.into(),
    }
}

fn began(n: u128) -> E {
    E::Began {
        operation: BulkAction::Start,
        server_ids: ids(n),
        requested_by: ADMIN.into(),
    }
}

fn ok(server: u128) -> BulkCommand {
    BulkCommand::RecordOutcome {
        server_id: Uuid::from_u128(server),
        outcome: TargetOutcome::Succeeded,
    }
}

fn failed(server: u128, error: &str) -> BulkCommand {
    BulkCommand::RecordOutcome {
        server_id: Uuid::from_u128(server),
        outcome: TargetOutcome::Failed {
            error: error.into(),
        },
    }
}

fn server_ids_error(message: &str) -> BulkError {
    BulkError::Invalid(vec![FieldError::new("server_ids", message)])
}

#[test]
fn begin_records_the_targets_once_each_in_the_order_asked() {
    let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
    Given::with(())
        .given_no_previous_events()
        .when(begin(BulkAction::Stop, vec![b, a, b, c, a]))
        .then_expect_events(vec![E::Began {
            operation: BulkAction::Stop,
            server_ids: vec![b, a, c],
            requested_by: ADMIN.into(),
        }]);
}

#[test]
fn begin_needs_one_to_a_thousand_distinct_servers() {
    Given::with(())
        .given_no_previous_events()
        .when(begin(BulkAction::Start, vec![]))
        .then_expect_error(server_ids_error("must name at least one server"));
    Given::with(())
        .given_no_previous_events()
        .when(begin(BulkAction::Start, ids(1001)))
        .then_expect_error(server_ids_error(
            "must name at most 1000 distinct servers (it names 1001)",
        ));
    // Repeats do not count against the limit.
    let mut many = ids(1000);
    many.extend(ids(5));
    let events = Given::with(())
        .given_no_previous_events()
        .when(begin(BulkAction::Start, many))
        .inspect_result()
        .unwrap_or_default();
    assert!(matches!(&events[..], [E::Began { server_ids, .. }] if server_ids.len() == 1000));
}

#[test]
fn begin_again_with_the_same_request_changes_nothing() {
    Given::with(())
        .given(vec![began(3)])
        .when(begin(BulkAction::Start, ids(3)))
        .then_expect_events(vec![]);
    // Repeats are dropped before comparing.
    let mut repeated = ids(3);
    repeated.push(Uuid::from_u128(2));
    Given::with(())
        .given(vec![began(3)])
        .when(begin(BulkAction::Start, repeated))
        .then_expect_events(vec![]);
}

#[test]
fn begin_again_with_another_request_is_refused() {
    for other in [
        begin(BulkAction::Stop, ids(3)),
        begin(BulkAction::Start, ids(2)),
        begin(BulkAction::Start, ids(3).into_iter().rev().collect()),
        BulkCommand::Begin {
            operation: BulkAction::Start,
            server_ids: ids(3),
            requested_by: "user:someone-else".into(),
        },
    ] {
        Given::with(())
            .given(vec![began(3)])
            .when(other)
            .then_expect_error(BulkError::BegunDifferently);
    }
}

#[test]
fn outcomes_are_recorded_once_per_target() {
    Given::with(())
        .given(vec![began(3)])
        .when(ok(2))
        .then_expect_events(vec![E::TargetSucceeded {
            server_id: Uuid::from_u128(2),
        }]);
    Given::with(())
        .given(vec![began(3)])
        .when(failed(1, "server not found"))
        .then_expect_events(vec![E::TargetFailed {
            server_id: Uuid::from_u128(1),
            error: "server not found".into(),
        }]);
    // Recorded before, with either outcome: nothing changes.
    let earlier = E::TargetSucceeded {
        server_id: Uuid::from_u128(2),
    };
    Given::with(())
        .given(vec![began(3), earlier.clone()])
        .when(ok(2))
        .then_expect_events(vec![]);
    Given::with(())
        .given(vec![began(3), earlier])
        .when(failed(2, "too late"))
        .then_expect_events(vec![]);
}

#[test]
fn the_last_outcome_completes_the_operation() {
    let s = |n| E::TargetSucceeded {
        server_id: Uuid::from_u128(n),
    };
    let f = |n| E::TargetFailed {
        server_id: Uuid::from_u128(n),
        error: "no".into(),
    };
    Given::with(())
        .given(vec![began(3), s(1), s(3)])
        .when(ok(2))
        .then_expect_events(vec![
            s(2),
            E::Completed {
                state: BulkState::Completed,
                succeeded: 3,
                failed: 0,
            },
        ]);
    Given::with(())
        .given(vec![began(3), f(1), s(3)])
        .when(failed(2, "no"))
        .then_expect_events(vec![
            f(2),
            E::Completed {
                state: BulkState::PartiallyFailed,
                succeeded: 1,
                failed: 2,
            },
        ]);
    Given::with(())
        .given(vec![began(2), f(2)])
        .when(failed(1, "no"))
        .then_expect_events(vec![
            f(1),
            E::Completed {
                state: BulkState::Failed,
                succeeded: 0,
                failed: 2,
            },
        ]);
    // A single target: its outcome is the last one.
    Given::with(())
        .given(vec![began(1)])
        .when(ok(1))
        .then_expect_events(vec![
            s(1),
            E::Completed {
                state: BulkState::Completed,
                succeeded: 1,
                failed: 0,
            },
        ]);
    // After completion every target is recorded: reporting again changes nothing.
    Given::with(())
        .given(vec![
            began(1),
            s(1),
            E::Completed {
                state: BulkState::Completed,
                succeeded: 1,
                failed: 0,
            },
        ])
        .when(ok(1))
        .then_expect_events(vec![]);
}

#[test]
fn outcomes_need_a_begun_operation_and_one_of_its_targets() {
    Given::with(())
        .given_no_previous_events()
        .when(ok(1))
        .then_expect_error(BulkError::NotFound);
    Given::with(())
        .given(vec![began(3)])
        .when(ok(4))
        .then_expect_error(BulkError::UnknownTarget {
            server_id: Uuid::from_u128(4),
        });
}

#[test]
fn applying_events_tracks_progress_and_state() {
    use cqrs_es::Aggregate;
    let mut bulk = BulkOperation::default();
    bulk.apply(began(3));
    assert_eq!(bulk.state, BulkState::Running);
    assert_eq!(bulk.pending_targets(), ids(3));
    bulk.apply(E::TargetFailed {
        server_id: Uuid::from_u128(2),
        error: "no".into(),
    });
    bulk.apply(E::TargetSucceeded {
        server_id: Uuid::from_u128(3),
    });
    assert_eq!(bulk.counts(), (1, 1));
    assert_eq!(bulk.pending_targets(), vec![Uuid::from_u128(1)]);
    bulk.apply(E::TargetSucceeded {
        server_id: Uuid::from_u128(1),
    });
    bulk.apply(E::Completed {
        state: BulkState::PartiallyFailed,
        succeeded: 2,
        failed: 1,
    });
    assert_eq!(bulk.state, BulkState::PartiallyFailed);
    assert!(bulk.pending_targets().is_empty());
}

#[test]
fn names_round_trip() {
    for action in BulkAction::ALL {
        assert_eq!(BulkAction::parse(action.as_str()), Some(action));
        assert_eq!(
            serde_json::to_value(action).unwrap_or_default(),
            action.as_str()
        );
    }
    assert_eq!(BulkAction::parse("reboot"), None);
    assert_eq!(
        serde_json::to_value(BulkState::PartiallyFailed).unwrap_or_default(),
        "partially_failed"
    );
    assert_eq!(BulkState::of_finished(0, 0), BulkState::Completed);
}
