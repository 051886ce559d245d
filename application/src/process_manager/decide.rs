//! The process manager's decisions: from a server's recorded state and what the runtime
//! reports, the one next step. Pure, so every case is tested without a runtime.

use berth_domain::server::{RestartPolicy, Server, ServerState};

use crate::runtime::{InstanceState, InstanceStatus};

/// What to do next for one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing: the runtime matches the record.
    Nothing,
    /// `pending`: record that provisioning began.
    BeginProvisioning,
    /// `creating`: create the container or process and record its id.
    Create,
    /// `starting`: start it, check it answers MCP, record it running.
    Start,
    /// `stopping`: stop and remove it, record it stopped.
    Stop,
    /// It runs, or ran, though the record says it should not exist: remove it.
    RemoveLeftover,
    /// The record says running but it is gone or dead: record the exit.
    RecordExit {
        /// Its exit code, when known.
        exit_code: Option<i64>,
        /// Killed for exceeding its memory limit.
        oom_killed: bool,
        /// Whether there is still a container or process to remove.
        present: bool,
    },
    /// The record says starting or running, and its local process ended with the Berth
    /// that ran it: start it again, which is no failure of its own.
    Relaunch,
    /// Record that this node now runs its container, which outlived the node that ran it.
    Adopt,
    /// `failed` and its restart policy allows another try: restart it after a pause.
    ScheduleRestart {
        /// Which automatic restart in a row this will be (1, 2, ...).
        attempt: u32,
    },
}

/// Whether a server's recorded instance could have ended with an earlier Berth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// A container (it outlives Berth and is adopted by the next one), or a local
    /// process this Berth made: if it is missing, it died or was removed.
    OutlivesBerth,
    /// A local process an earlier Berth made: it ended with that Berth.
    EndsWithBerth,
}

/// The next step for `server`, given what the runtime says about it (`None`: nothing)
/// and whether what it runs ends with Berth.
pub fn next_step(server: &Server, instance: Option<&InstanceStatus>, lifetime: Lifetime) -> Step {
    if !server.created || server.deleted {
        return if instance.is_some() {
            Step::RemoveLeftover
        } else {
            Step::Nothing
        };
    }
    match server.state {
        ServerState::Pending => Step::BeginProvisioning,
        ServerState::Creating => Step::Create,
        ServerState::Starting | ServerState::Running
            if instance.is_none() && lifetime == Lifetime::EndsWithBerth =>
        {
            Step::Relaunch
        }
        ServerState::Starting => Step::Start,
        ServerState::Stopping => Step::Stop,
        ServerState::Running => match instance.map(|i| &i.state) {
            Some(InstanceState::Running) => Step::Nothing,
            Some(InstanceState::Exited {
                exit_code,
                oom_killed,
            }) => Step::RecordExit {
                exit_code: *exit_code,
                oom_killed: *oom_killed,
                present: true,
            },
            Some(InstanceState::Created) => Step::RecordExit {
                exit_code: None,
                oom_killed: false,
                present: true,
            },
            None => Step::RecordExit {
                exit_code: None,
                oom_killed: false,
                present: false,
            },
        },
        ServerState::Stopped | ServerState::Failed if instance.is_some() => Step::RemoveLeftover,
        ServerState::Failed => match server.restart_policy {
            RestartPolicy::OnFailure { max_retries }
                if server.restart_attempts < max_retries
                    && server.enabled
                    && !server.delete_pending =>
            {
                Step::ScheduleRestart {
                    attempt: server.restart_attempts + 1,
                }
            }
            _ => Step::Nothing,
        },
        ServerState::Stopped => Step::Nothing,
    }
}

/// Whether node `here` must record that it took `server` over: it runs, its container
/// runs, and the node it was recorded on is another (gone, since only one node drives
/// the runtime at a time) or none (recorded before nodes were).
pub fn adopts(server: &Server, instance: Option<&InstanceStatus>, here: &str) -> bool {
    server.created
        && !server.deleted
        && server.state == ServerState::Running
        && matches!(instance.map(|i| &i.state), Some(InstanceState::Running))
        && server.node.as_deref() != Some(here)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    const DOCKER: Lifetime = Lifetime::OutlivesBerth;

    fn server(state: ServerState) -> Server {
        Server {
            created: true,
            enabled: true,
            state,
            ..Server::default()
        }
    }

    fn instance(state: InstanceState) -> InstanceStatus {
        InstanceStatus {
            server_id: Uuid::nil(),
            instance_id: "c1".into(),
            state,
        }
    }

    #[test]
    fn each_transitional_state_has_its_step_whatever_the_runtime_says() {
        for (state, step) in [
            (ServerState::Pending, Step::BeginProvisioning),
            (ServerState::Creating, Step::Create),
            (ServerState::Starting, Step::Start),
            (ServerState::Stopping, Step::Stop),
        ] {
            assert_eq!(next_step(&server(state), None, DOCKER), step);
            let running = instance(InstanceState::Running);
            assert_eq!(next_step(&server(state), Some(&running), DOCKER), step);
        }
    }

    #[test]
    fn a_running_server_whose_container_died_or_vanished_is_recorded_as_exited() {
        let s = server(ServerState::Running);
        assert_eq!(
            next_step(&s, Some(&instance(InstanceState::Running)), DOCKER),
            Step::Nothing
        );
        assert_eq!(
            next_step(
                &s,
                Some(&instance(InstanceState::Exited {
                    exit_code: Some(137),
                    oom_killed: true
                })),
                Lifetime::OutlivesBerth
            ),
            Step::RecordExit {
                exit_code: Some(137),
                oom_killed: true,
                present: true
            }
        );
        assert_eq!(
            next_step(&s, None, DOCKER),
            Step::RecordExit {
                exit_code: None,
                oom_killed: false,
                present: false
            }
        );
    }

    #[test]
    fn leftovers_of_stopped_failed_and_deleted_servers_are_removed() {
        let leftover = instance(InstanceState::Running);
        for s in [server(ServerState::Stopped), server(ServerState::Failed)] {
            assert_eq!(next_step(&s, Some(&leftover), DOCKER), Step::RemoveLeftover);
            assert_eq!(next_step(&s, None, DOCKER), Step::Nothing);
        }
        let mut deleted = server(ServerState::Stopped);
        deleted.deleted = true;
        assert_eq!(
            next_step(&deleted, Some(&leftover), DOCKER),
            Step::RemoveLeftover
        );
        assert_eq!(
            next_step(&Server::default(), Some(&leftover), DOCKER),
            Step::RemoveLeftover
        );
        assert_eq!(next_step(&Server::default(), None, DOCKER), Step::Nothing);
    }

    #[test]
    fn failed_servers_restart_only_as_their_policy_allows() {
        let mut s = server(ServerState::Failed);
        assert_eq!(next_step(&s, None, DOCKER), Step::Nothing);
        s.restart_policy = RestartPolicy::OnFailure { max_retries: 2 };
        assert_eq!(
            next_step(&s, None, DOCKER),
            Step::ScheduleRestart { attempt: 1 }
        );
        s.restart_attempts = 2;
        assert_eq!(next_step(&s, None, DOCKER), Step::Nothing);
        s.restart_attempts = 0;
        s.enabled = false;
        assert_eq!(next_step(&s, None, DOCKER), Step::Nothing);
    }

    #[test]
    fn a_local_process_lost_with_berth_is_relaunched_and_a_dead_one_is_an_exit() {
        let local = Lifetime::EndsWithBerth;
        for state in [ServerState::Starting, ServerState::Running] {
            assert_eq!(next_step(&server(state), None, local), Step::Relaunch);
            assert_eq!(next_step(&server(state), None, DOCKER), {
                if state == ServerState::Starting {
                    Step::Start
                } else {
                    Step::RecordExit {
                        exit_code: None,
                        oom_killed: false,
                        present: false,
                    }
                }
            });
        }
        // A process that died while Berth ran is still there, exited: its failure counts.
        let died = instance(InstanceState::Exited {
            exit_code: Some(1),
            oom_killed: false,
        });
        assert_eq!(
            next_step(&server(ServerState::Running), Some(&died), local),
            Step::RecordExit {
                exit_code: Some(1),
                oom_killed: false,
                present: true
            }
        );
        for state in [
            ServerState::Stopped,
            ServerState::Failed,
            ServerState::Pending,
        ] {
            assert_ne!(next_step(&server(state), None, local), Step::Relaunch);
        }
    }

    #[test]
    fn only_a_running_container_recorded_on_another_node_is_adopted() {
        let on = |node: Option<&str>, state: ServerState| Server {
            node: node.map(str::to_owned),
            ..server(state)
        };
        let running = instance(InstanceState::Running);
        let here = "n2";
        assert!(adopts(
            &on(Some("n1"), ServerState::Running),
            Some(&running),
            here
        ));
        assert!(adopts(
            &on(None, ServerState::Running),
            Some(&running),
            here
        ));
        assert!(!adopts(
            &on(Some(here), ServerState::Running),
            Some(&running),
            here
        ));
        // Not running, or its container gone or dead: other steps deal with it.
        assert!(!adopts(
            &on(Some("n1"), ServerState::Starting),
            Some(&running),
            here
        ));
        assert!(!adopts(&on(Some("n1"), ServerState::Running), None, here));
        let exited = instance(InstanceState::Exited {
            exit_code: Some(1),
            oom_killed: false,
        });
        assert!(!adopts(
            &on(Some("n1"), ServerState::Running),
            Some(&exited),
            here
        ));
        let deleted = Server {
            deleted: true,
            ..on(Some("n1"), ServerState::Running)
        };
        assert!(!adopts(&deleted, Some(&running), here));
    }
}
