//! Given/when/then tests of the server lifecycle: every command in every state.

use std::collections::BTreeMap;

use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use uuid::Uuid;

use super::*;
use crate::catalog::ConfigKey;
use crate::FieldError;

type Given = TestFramework<Server>;
use ServerEvent as E;
use ServerState as S;

fn key(key: &str, required: bool, secret: bool) -> ConfigKey {
    ConfigKey {
        key: key.into(),
        description: String::new(),
        required,
        secret,
        default: None,
    }
}

fn sealed(tag: &str) -> SealedSecret {
    SealedSecret {
        key_id: "k1".into(),
        nonce: tag.into(),
        ciphertext: tag.into(),
    }
}

fn created() -> ServerEvent {
    E::Created {
        owner: "user:a".into(),
        catalog_id: Uuid::nil(),
        catalog_version: 1,
        name: "srv".into(),
        config: BTreeMap::from([("REGION".into(), "eu".into())]),
        secrets: BTreeMap::from([("TOKEN".into(), sealed("a"))]),
        restart_policy: RestartPolicy::Never,
    }
}

fn schema() -> Vec<ConfigKey> {
    vec![
        key("REGION", true, false),
        key("TOKEN", true, true),
        key("DEBUG", false, false),
    ]
}

/// The events that bring a fresh server into `state`.
fn history(state: ServerState) -> Vec<ServerEvent> {
    let mut h = vec![created()];
    let path: &[ServerEvent] = match state {
        S::Stopped => &[],
        S::Pending => &[E::StartRequested],
        S::Creating => &[E::StartRequested, E::ProvisioningBegan],
        S::Starting => &[
            E::StartRequested,
            E::ProvisioningBegan,
            E::ContainerCreated {
                container_id: "c1".into(),
                node: Some("n1".into()),
            },
        ],
        S::Running => &[
            E::StartRequested,
            E::ProvisioningBegan,
            E::ContainerCreated {
                container_id: "c1".into(),
                node: Some("n1".into()),
            },
            E::Running,
        ],
        S::Stopping => &[E::StartRequested, E::StopRequested],
        S::Failed => &[E::StartRequested, E::Failed { reason: "x".into() }],
    };
    h.extend_from_slice(path);
    h
}

fn outcome(state: ServerState, command: ServerCommand) -> Result<Vec<ServerEvent>, ServerError> {
    Given::with(())
        .given(history(state))
        .when(command)
        .inspect_result()
}

#[test]
fn every_lifecycle_command_in_every_state() {
    let failed = || E::Failed {
        reason: "boom".into(),
    };
    let exited = || E::Exited {
        exit_code: Some(137),
        reason: "boom".into(),
    };
    type NamedCommand = (&'static str, fn() -> ServerCommand);
    let commands: Vec<NamedCommand> = vec![
        ("start", || ServerCommand::Start),
        ("stop", || ServerCommand::Stop),
        ("restart", || ServerCommand::Restart),
        ("delete", || ServerCommand::Delete),
        ("begin", || ServerCommand::BeginProvisioning),
        ("created", || ServerCommand::RecordContainerCreated {
            container_id: "c2".into(),
            node: "n1".into(),
        }),
        ("running", || ServerCommand::RecordRunning {
            tools: vec![],
            endpoint: None,
        }),
        ("failed", || ServerCommand::RecordFailed {
            reason: "boom".into(),
        }),
        ("exited", || ServerCommand::RecordExited {
            exit_code: Some(137),
            reason: "boom".into(),
        }),
        ("stopped", || ServerCommand::RecordStopped),
    ];
    // One row per state, one column per command above; `None` means refused.
    type Row = (ServerState, Vec<Option<Vec<ServerEvent>>>);
    let table: Vec<Row> = vec![
        (
            S::Stopped,
            vec![
                Some(vec![E::StartRequested]),
                None,
                Some(vec![E::StartRequested]),
                Some(vec![E::Deleted]),
                None,
                None,
                None,
                None,
                None,
                None,
            ],
        ),
        (
            S::Pending,
            vec![
                None,
                Some(vec![E::StopRequested]),
                Some(vec![E::RestartRequested]),
                Some(vec![E::DeletionRequested]),
                Some(vec![E::ProvisioningBegan]),
                None,
                None,
                Some(vec![failed()]),
                None,
                None,
            ],
        ),
        (
            S::Creating,
            vec![
                None,
                Some(vec![E::StopRequested]),
                Some(vec![E::RestartRequested]),
                Some(vec![E::DeletionRequested]),
                None,
                Some(vec![E::ContainerCreated {
                    container_id: "c2".into(),
                    node: Some("n1".into()),
                }]),
                None,
                Some(vec![failed()]),
                None,
                None,
            ],
        ),
        (
            S::Starting,
            vec![
                None,
                Some(vec![E::StopRequested]),
                Some(vec![E::RestartRequested]),
                Some(vec![E::DeletionRequested]),
                None,
                None,
                Some(vec![
                    E::Running,
                    E::HealthChanged {
                        health: Health::Healthy,
                    },
                ]),
                Some(vec![failed()]),
                Some(vec![exited()]),
                None,
            ],
        ),
        (
            S::Running,
            vec![
                None,
                Some(vec![E::StopRequested]),
                Some(vec![E::RestartRequested]),
                Some(vec![E::DeletionRequested]),
                None,
                None,
                None,
                Some(vec![failed()]),
                Some(vec![exited()]),
                None,
            ],
        ),
        (
            S::Stopping,
            vec![
                None,
                None,
                None,
                Some(vec![E::DeletionRequested]),
                None,
                None,
                None,
                Some(vec![failed()]),
                None,
                Some(vec![E::Stopped]),
            ],
        ),
        (
            S::Failed,
            vec![
                Some(vec![E::StartRequested]),
                None,
                Some(vec![E::StartRequested]),
                Some(vec![E::Deleted]),
                None,
                None,
                None,
                None,
                None,
                None,
            ],
        ),
    ];
    assert_eq!(table.len(), ServerState::ALL.len());
    for (state, row) in table {
        for ((name, command), expected) in commands.iter().zip(row) {
            let got = outcome(state, command());
            match expected {
                Some(events) => assert_eq!(got, Ok(events), "{name} in {state}"),
                None => match got {
                    Err(ServerError::InvalidTransition { from, .. }) => {
                        assert_eq!(from, state, "{name} in {state} names the state")
                    }
                    other => panic!("{name} in {state} should be refused, got {other:?}"),
                },
            }
        }
    }
}

#[test]
fn refusals_name_the_state_and_the_command() {
    let err = outcome(S::Running, ServerCommand::Start).unwrap_err();
    assert_eq!(err.to_string(), "cannot start a server that is running");
}

#[test]
fn disabled_servers_refuse_to_start_and_disabling_a_running_one_stops_it() {
    let mut h = history(S::Stopped);
    h.push(E::Disabled);
    for command in [ServerCommand::Start, ServerCommand::Restart] {
        Given::with(())
            .given(h.clone())
            .when(command.clone())
            .then_expect_error(ServerError::Disabled {
                command: command.name(),
            });
    }
    Given::with(())
        .given(h)
        .when(ServerCommand::Disable)
        .then_expect_error(ServerError::AlreadyDisabled);
    Given::with(())
        .given(history(S::Running))
        .when(ServerCommand::Disable)
        .then_expect_events(vec![E::Disabled, E::StopRequested]);
    Given::with(())
        .given(history(S::Stopped))
        .when(ServerCommand::Enable)
        .then_expect_error(ServerError::AlreadyEnabled);
}

#[test]
fn restart_starts_again_once_stopped() {
    let mut h = history(S::Running);
    h.push(E::RestartRequested);
    Given::with(())
        .given(h)
        .when(ServerCommand::RecordStopped)
        .then_expect_events(vec![E::Stopped, E::StartRequested]);
}

#[test]
fn deleting_a_running_server_finishes_once_stopped_and_then_it_is_gone() {
    let mut h = history(S::Running);
    h.push(E::DeletionRequested);
    Given::with(())
        .given(h.clone())
        .when(ServerCommand::Start)
        .then_expect_error(ServerError::BeingDeleted { command: "start" });
    Given::with(())
        .given(h.clone())
        .when(ServerCommand::RecordStopped)
        .then_expect_events(vec![E::Stopped, E::Deleted]);
    h.extend([E::Stopped, E::Deleted]);
    for command in [
        ServerCommand::Start,
        ServerCommand::Delete,
        ServerCommand::Stop,
    ] {
        Given::with(())
            .given(h.clone())
            .when(command)
            .then_expect_error(ServerError::NotFound);
    }
}

#[test]
fn commands_on_a_server_that_does_not_exist_are_not_found() {
    Given::with(())
        .given_no_previous_events()
        .when(ServerCommand::Start)
        .then_expect_error(ServerError::NotFound);
}

#[test]
fn create_validates_name_and_config_against_the_schema() {
    let err = Given::with(())
        .given_no_previous_events()
        .when(ServerCommand::Create {
            owner: "user:a".into(),
            catalog_id: Uuid::nil(),
            catalog_version: 1,
            schema: schema(),
            name: "bad name".into(),
            config: BTreeMap::from([
                ("TOKEN".into(), "plain".into()),
                ("NOPE".into(), "x".into()),
            ]),
            secrets: BTreeMap::from([("DEBUG".into(), sealed("b"))]),
            restart_policy: RestartPolicy::Never,
        })
        .inspect_result()
        .unwrap_err();
    let ServerError::Invalid(errors) = err else {
        panic!("expected validation errors, got {err:?}");
    };
    let fields: Vec<_> = errors
        .iter()
        .map(|e: &FieldError| e.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "name",
            "config.NOPE",
            "config.TOKEN",
            "secrets.DEBUG",
            "config.REGION",
            "secrets.TOKEN"
        ]
    );
}

#[test]
fn create_twice_is_refused() {
    Given::with(())
        .given(vec![created()])
        .when(ServerCommand::Create {
            owner: "user:a".into(),
            catalog_id: Uuid::nil(),
            catalog_version: 1,
            schema: schema(),
            name: "srv".into(),
            config: BTreeMap::from([("REGION".into(), "eu".into())]),
            secrets: BTreeMap::from([("TOKEN".into(), sealed("a"))]),
            restart_policy: RestartPolicy::Never,
        })
        .then_expect_error(ServerError::AlreadyExists);
}

#[test]
fn config_updates_record_the_whole_new_set_and_only_real_changes() {
    Given::with(())
        .given(vec![created()])
        .when(ServerCommand::UpdateConfig {
            schema: schema(),
            config: BTreeMap::from([
                ("REGION".into(), ConfigChange::Set("eu".into())),
                ("DEBUG".into(), ConfigChange::Set("1".into())),
            ]),
            secrets: BTreeMap::from([("TOKEN".into(), ConfigChange::Set(sealed("c")))]),
            restart_policy: Some(RestartPolicy::Never),
        })
        .then_expect_events(vec![E::ConfigUpdated {
            config: BTreeMap::from([("DEBUG".into(), "1".into()), ("REGION".into(), "eu".into())]),
            secrets: BTreeMap::from([("TOKEN".into(), sealed("c"))]),
            changed_keys: vec!["config.DEBUG".into(), "secrets.TOKEN".into()],
        }]);
    Given::with(())
        .given(vec![created()])
        .when(ServerCommand::UpdateConfig {
            schema: schema(),
            config: BTreeMap::from([("REGION".into(), ConfigChange::Remove)]),
            secrets: BTreeMap::new(),
            restart_policy: None,
        })
        .then_expect_error(ServerError::Invalid(vec![FieldError::new(
            "config.REGION",
            "is required",
        )]));
    Given::with(())
        .given(vec![created()])
        .when(ServerCommand::UpdateConfig {
            schema: schema(),
            config: BTreeMap::from([("REGION".into(), ConfigChange::Set("eu".into()))]),
            secrets: BTreeMap::new(),
            restart_policy: None,
        })
        .then_expect_events(vec![]);
}

#[test]
fn health_and_tools_are_recorded_only_when_they_change() {
    let mut h = history(S::Running);
    Given::with(())
        .given(h.clone())
        .when(ServerCommand::RecordHealth {
            health: Health::Unknown,
        })
        .then_expect_events(vec![]);
    h.push(E::HealthChanged {
        health: Health::Healthy,
    });
    Given::with(())
        .given(h.clone())
        .when(ServerCommand::RecordHealth {
            health: Health::Unhealthy,
        })
        .then_expect_events(vec![E::HealthChanged {
            health: Health::Unhealthy,
        }]);
    let tools = vec![Tool {
        name: "echo".into(),
        description: None,
        input_schema: None,
    }];
    h.push(E::ToolsDiscovered {
        tools: tools.clone(),
    });
    Given::with(())
        .given(h)
        .when(ServerCommand::RecordTools { tools })
        .then_expect_events(vec![]);
}

#[test]
fn sealed_secrets_do_not_print_their_ciphertext() {
    let shown = format!("{:?}", sealed("very-secret-bytes"));
    assert!(!shown.contains("very-secret-bytes"));
}

#[test]
fn automatic_restarts_follow_the_policy_and_are_bounded() {
    let policy = RestartPolicy::OnFailure { max_retries: 2 };
    let mut h = history(S::Failed);
    Given::with(())
        .given(h.clone())
        .when(ServerCommand::RestartAfterFailure)
        .then_expect_error(ServerError::RestartNotAllowed);
    Given::with(())
        .given(h.clone())
        .when(ServerCommand::UpdateConfig {
            schema: schema(),
            config: BTreeMap::new(),
            secrets: BTreeMap::new(),
            restart_policy: Some(policy),
        })
        .then_expect_events(vec![E::RestartPolicyChanged {
            restart_policy: policy,
        }]);
    h.push(E::RestartPolicyChanged {
        restart_policy: policy,
    });
    Given::with(())
        .given(h.clone())
        .when(ServerCommand::RestartAfterFailure)
        .then_expect_events(vec![E::RestartedAfterFailure { attempt: 1 }]);
    let failed = || E::Failed {
        reason: "again".into(),
    };
    h.extend([
        E::RestartedAfterFailure { attempt: 1 },
        failed(),
        E::RestartedAfterFailure { attempt: 2 },
        failed(),
    ]);
    Given::with(())
        .given(h.clone())
        .when(ServerCommand::RestartAfterFailure)
        .then_expect_error(ServerError::RestartNotAllowed);
    // A start a person asks for resets the count.
    h.extend([E::StartRequested, failed()]);
    Given::with(())
        .given(h)
        .when(ServerCommand::RestartAfterFailure)
        .then_expect_events(vec![E::RestartedAfterFailure { attempt: 1 }]);
    Given::with(())
        .given(history(S::Running))
        .when(ServerCommand::RestartAfterFailure)
        .then_expect_error(ServerError::InvalidTransition {
            from: S::Running,
            command: "restart after failure",
        });
    Given::with(())
        .given(history(S::Stopped))
        .when(ServerCommand::UpdateConfig {
            schema: schema(),
            config: BTreeMap::new(),
            secrets: BTreeMap::new(),
            restart_policy: Some(RestartPolicy::OnFailure { max_retries: 0 }),
        })
        .then_expect_error(ServerError::Invalid(vec![FieldError::new(
            "restart_policy.max_retries",
            "must be between 1 and 100",
        )]));
}

#[test]
fn an_upgrade_moves_the_server_to_another_version_whose_schema_its_config_satisfies() {
    Given::with(())
        .given(history(S::Running))
        .when(ServerCommand::Upgrade {
            catalog_version: 3,
            schema: schema(),
        })
        .then_expect_events(vec![E::Upgraded {
            from_version: 1,
            catalog_version: 3,
        }]);
    let mut server = Server::default();
    for event in history(S::Stopped) {
        server.apply(event);
    }
    server.apply(E::Upgraded {
        from_version: 1,
        catalog_version: 3,
    });
    assert_eq!(server.catalog_version, 3);
}

#[test]
fn an_upgrade_to_the_same_version_or_a_schema_the_config_breaks_is_refused() {
    Given::with(())
        .given(history(S::Stopped))
        .when(ServerCommand::Upgrade {
            catalog_version: 1,
            schema: schema(),
        })
        .then_expect_error(ServerError::AlreadyAtVersion(1));
    let stricter = vec![
        key("REGION", true, false),
        key("TOKEN", true, true),
        key("ZONE", true, false),
    ];
    Given::with(())
        .given(history(S::Stopped))
        .when(ServerCommand::Upgrade {
            catalog_version: 2,
            schema: stricter,
        })
        .then_expect_error(ServerError::Invalid(vec![FieldError::new(
            "config.ZONE",
            "is required",
        )]));
}

#[test]
fn a_failure_reason_is_recorded_bounded() {
    let long = "é".repeat(MAX_REASON_BYTES);
    let events = {
        let mut server = Server::default();
        for event in history(S::Starting) {
            server.apply(event);
        }
        server
            .decide(ServerCommand::RecordFailed { reason: long })
            .expect("a failure is recorded")
    };
    let [E::Failed { reason }] = events.as_slice() else {
        panic!("unexpected events {events:?}");
    };
    assert!(reason.len() <= MAX_REASON_BYTES, "{} bytes", reason.len());
    assert!(reason.ends_with("[cut]"));
}

#[test]
fn a_server_lost_with_berth_is_relaunched_without_using_a_restart_attempt() {
    for state in [S::Starting, S::Running] {
        assert_eq!(
            outcome(state, ServerCommand::Relaunch),
            Ok(vec![E::Relaunched])
        );
    }
    for state in [S::Stopped, S::Pending, S::Creating, S::Stopping, S::Failed] {
        assert_eq!(
            outcome(state, ServerCommand::Relaunch),
            Err(ServerError::InvalidTransition {
                from: state,
                command: "relaunch",
            })
        );
    }
    let mut server = Server::default();
    let mut h = history(S::Running);
    h.extend([
        E::Failed { reason: "x".into() },
        E::RestartedAfterFailure { attempt: 1 },
        E::ProvisioningBegan,
        E::ContainerCreated {
            container_id: "c2".into(),
            node: Some("n1".into()),
        },
        E::Running,
        E::Relaunched,
    ]);
    for event in h {
        server.apply(event);
    }
    assert_eq!(server.state, S::Pending);
    assert_eq!(server.restart_attempts, 1, "a relaunch is not an attempt");
    assert_eq!(server.container_id, None);
    // Being deleted, it is not brought back.
    let mut deleting = history(S::Running);
    deleting.push(E::DeletionRequested);
    Given::with(())
        .given(deleting)
        .when(ServerCommand::Relaunch)
        .then_expect_error(ServerError::InvalidTransition {
            from: S::Stopping,
            command: "relaunch",
        });
}

#[test]
fn sharing_records_the_whole_new_set_and_only_real_changes() {
    let bob = Uuid::from_u128(2);
    let with_bob = Sharing {
        everyone: false,
        users: [bob].into(),
    };
    let mut h = history(S::Running);
    Given::with(())
        .given(h.clone())
        .when(ServerCommand::Share {
            sharing: with_bob.clone(),
        })
        .then_expect_events(vec![E::SharingChanged {
            sharing: with_bob.clone(),
        }]);
    h.push(E::SharingChanged {
        sharing: with_bob.clone(),
    });
    Given::with(())
        .given(h.clone())
        .when(ServerCommand::Share {
            sharing: with_bob.clone(),
        })
        .then_expect_events(vec![]);
    Given::with(())
        .given(h.clone())
        .when(ServerCommand::Share {
            sharing: Sharing::default(),
        })
        .then_expect_events(vec![E::SharingChanged {
            sharing: Sharing::default(),
        }]);
    let mut server = Server::default();
    h.into_iter().for_each(|e| server.apply(e));
    assert!(server.sharing.includes(bob));
    assert!(!server.sharing.includes(Uuid::from_u128(3)));
}

#[test]
fn sharing_is_bounded_and_refused_for_servers_being_deleted() {
    let too_many = Sharing {
        everyone: false,
        users: (0..=MAX_SHARED_USERS as u128)
            .map(Uuid::from_u128)
            .collect(),
    };
    let refused = outcome(S::Stopped, ServerCommand::Share { sharing: too_many });
    assert!(
        matches!(&refused, Err(ServerError::Invalid(errors)) if errors[0].field == "users"),
        "{refused:?}"
    );
    let mut h = history(S::Running);
    h.push(E::DeletionRequested);
    let everyone = Sharing {
        everyone: true,
        users: Default::default(),
    };
    Given::with(())
        .given(h)
        .when(ServerCommand::Share { sharing: everyone })
        .then_expect_error(ServerError::BeingDeleted { command: "share" });
    Given::with(())
        .given(vec![])
        .when(ServerCommand::Share {
            sharing: Sharing::default(),
        })
        .then_expect_error(ServerError::NotFound);
}

#[test]
fn a_running_container_is_adopted_by_another_node_once() {
    // `history` puts the container on node n1.
    for state in [S::Starting, S::Running, S::Stopping] {
        assert_eq!(
            outcome(state, ServerCommand::RecordAdopted { node: "n2".into() }),
            Ok(vec![E::Adopted { node: "n2".into() }])
        );
        // The node that runs it already: nothing to record, so a second adoption of the
        // same takeover is refused and the log holds one. (This history's stopping
        // server never had a container.)
        if state == S::Stopping {
            continue;
        }
        assert!(outcome(state, ServerCommand::RecordAdopted { node: "n1".into() }).is_err());
    }
    for state in [S::Stopped, S::Pending, S::Creating, S::Failed] {
        assert!(outcome(state, ServerCommand::RecordAdopted { node: "n2".into() }).is_err());
    }
    let mut server = Server::default();
    let mut h = history(S::Running);
    h.push(E::Adopted { node: "n2".into() });
    for event in h.clone() {
        server.apply(event);
    }
    assert_eq!(server.node.as_deref(), Some("n2"));
    // Stopped, it runs nowhere.
    server.apply(E::StopRequested);
    server.apply(E::Stopped);
    assert_eq!(server.node, None);
}
