//! The process runtime against real local programs (`/bin/cat`, `/bin/sh`, …).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_application::runtime::{
    ContainerRuntime, InstanceState, LaunchSpec, McpEndpoint, RuntimeError, StdioConnection,
};
use berth_domain::catalog::{Resources, RuntimeSpec, Transport};
use berth_infrastructure::runtime::ProcessRuntime;
use futures_util::StreamExt;
use secrecy::SecretString;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// A runtime over a scratch log directory; its processes die with it.
fn runtime() -> (ProcessRuntime, TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("berth-process-runtime-")
        .tempdir()
        .unwrap();
    (ProcessRuntime::new(dir.path().to_owned()), dir)
}

fn spec(command: &str, args: &[&str], transport: Transport) -> LaunchSpec {
    LaunchSpec {
        server_id: Uuid::new_v4(),
        owner: "alice".into(),
        name: "local".into(),
        transport,
        runtime: RuntimeSpec::Process {
            command: command.into(),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        },
        env: BTreeMap::new(),
        resources: Resources::default(),
    }
}

async fn wait_for_exit(runtime: &ProcessRuntime, server_id: Uuid) -> InstanceState {
    tokio::time::timeout(WAIT, async {
        loop {
            let state = runtime
                .inspect(server_id)
                .await
                .unwrap()
                .expect("instance")
                .state;
            if matches!(state, InstanceState::Exited { .. }) {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the process did not exit")
}

/// Log lines once at least `count` are there.
async fn logs_when(runtime: &ProcessRuntime, server_id: Uuid, count: usize) -> Vec<String> {
    logs_until(runtime, server_id, |logs| logs.len() >= count).await
}

/// Log lines once `done` says they are complete.
async fn logs_until(
    runtime: &ProcessRuntime,
    server_id: Uuid,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    tokio::time::timeout(WAIT, async {
        loop {
            let logs = runtime.logs(server_id, 1_000).await.unwrap();
            if done(&logs) {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the logs never filled")
}

async fn stdio(runtime: &ProcessRuntime, server_id: Uuid) -> StdioConnection {
    match runtime.connect(server_id, Transport::Stdio).await.unwrap() {
        McpEndpoint::Stdio(connection) => connection,
        _ => panic!("a stdio server answered with a URL"),
    }
}

async fn read_line(reader: &mut (impl AsyncBufReadExt + Unpin)) -> String {
    let mut line = String::new();
    tokio::time::timeout(WAIT, reader.read_line(&mut line))
        .await
        .expect("no answer")
        .unwrap();
    line
}

#[tokio::test]
async fn cat_round_trips_over_stdio_and_takes_a_second_client() {
    let (runtime, _dir) = runtime();
    let launch = spec("cat", &[], Transport::Stdio);
    let server_id = launch.server_id;

    let id = runtime.create(&launch).await.unwrap();
    assert_eq!(runtime.create(&launch).await.unwrap(), id);
    assert_eq!(
        runtime.inspect(server_id).await.unwrap().unwrap().state,
        InstanceState::Created
    );
    runtime.start(server_id).await.unwrap();
    runtime.start(server_id).await.unwrap();
    let status = runtime.inspect(server_id).await.unwrap().unwrap();
    assert_eq!(
        (status.instance_id.as_str(), status.state),
        (id.as_str(), InstanceState::Running)
    );

    let StdioConnection { reader, mut writer } = stdio(&runtime, server_id).await;
    let mut reader = BufReader::new(reader);
    for word in ["one", "two"] {
        writer
            .write_all(format!("{word}\n").as_bytes())
            .await
            .unwrap();
        writer.flush().await.unwrap();
        assert_eq!(read_line(&mut reader).await, format!("{word}\n"));
    }
    drop((reader, writer));

    // cat still runs: its stdin stayed open when the first client let go.
    let StdioConnection { reader, mut writer } = stdio(&runtime, server_id).await;
    writer.write_all(b"three\n").await.unwrap();
    assert_eq!(read_line(&mut BufReader::new(reader)).await, "three\n");
    drop(writer);
    assert_eq!(
        runtime.inspect(server_id).await.unwrap().unwrap().state,
        InstanceState::Running
    );

    runtime
        .stop(server_id, Duration::from_secs(5))
        .await
        .unwrap();
    runtime
        .stop(server_id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        runtime.inspect(server_id).await.unwrap().unwrap().state,
        InstanceState::Exited {
            exit_code: Some(128 + 15),
            oom_killed: false
        }
    );
    assert!(
        runtime.connect(server_id, Transport::Stdio).await.is_err(),
        "stopped"
    );

    // Started again after a stop, like a stopped container.
    runtime.start(server_id).await.unwrap();
    assert_eq!(
        runtime.inspect(server_id).await.unwrap().unwrap().state,
        InstanceState::Running
    );

    runtime.remove(server_id).await.unwrap();
    runtime.remove(server_id).await.unwrap();
    assert!(runtime.inspect(server_id).await.unwrap().is_none());
    assert!(matches!(
        runtime.start(server_id).await,
        Err(RuntimeError::NotFound)
    ));
    runtime
        .stop(server_id, Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn only_one_stdio_client_at_a_time() {
    let (runtime, _dir) = runtime();
    let launch = spec("/bin/cat", &[], Transport::Stdio);
    runtime.create(&launch).await.unwrap();
    runtime.start(launch.server_id).await.unwrap();

    let first = stdio(&runtime, launch.server_id).await;
    let second = tokio::time::timeout(
        Duration::from_millis(300),
        runtime.connect(launch.server_id, Transport::Stdio),
    )
    .await;
    assert!(
        second.is_err(),
        "a second client got in while the first held the stdio"
    );
    drop(first);
    let StdioConnection { reader, mut writer } = stdio(&runtime, launch.server_id).await;
    writer.write_all(b"after\n").await.unwrap();
    assert_eq!(read_line(&mut BufReader::new(reader)).await, "after\n");
    runtime.remove(launch.server_id).await.unwrap();
}

#[tokio::test]
async fn a_process_that_exits_by_itself_reports_its_code() {
    let (runtime, _dir) = runtime();
    let launch = spec("/bin/sh", &["-c", "exit 3"], Transport::Stdio);
    runtime.create(&launch).await.unwrap();
    runtime.start(launch.server_id).await.unwrap();
    assert_eq!(
        wait_for_exit(&runtime, launch.server_id).await,
        InstanceState::Exited {
            exit_code: Some(3),
            oom_killed: false
        }
    );
    let listed = runtime.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].server_id, launch.server_id);
    runtime.remove(launch.server_id).await.unwrap();
    assert!(runtime.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_program_is_command_unavailable() {
    let (runtime, dir) = runtime();
    let missing = format!("berth-no-such-program-{}", Uuid::new_v4().simple());
    let not_executable = dir.path().join("notes.txt");
    std::fs::write(&not_executable, "not a program").unwrap();
    for command in [
        missing.clone(),
        format!("/nonexistent/{missing}"),
        not_executable.display().to_string(),
    ] {
        match runtime.create(&spec(&command, &[], Transport::Stdio)).await {
            Err(RuntimeError::CommandUnavailable { command: named, .. }) => {
                assert_eq!(named, command)
            }
            other => panic!("expected CommandUnavailable for {command}, got {other:?}"),
        }
    }
    assert!(runtime.list().await.unwrap().is_empty());

    let docker_entry = LaunchSpec {
        runtime: RuntimeSpec::Docker {
            image: "alpine".into(),
            command: vec![],
            port: None,
        },
        ..spec("cat", &[], Transport::Stdio)
    };
    assert!(matches!(
        runtime.create(&docker_entry).await,
        Err(RuntimeError::Failed(_))
    ));
}

#[tokio::test]
async fn stop_kills_a_process_group_that_ignores_sigterm_after_the_grace() {
    let (runtime, _dir) = runtime();
    // The shell and its `sleep` both ignore SIGTERM; the shell reports the sleep's pid.
    let launch = spec(
        "/bin/sh",
        &["-c", r#"trap "" TERM; sleep 60 & echo "$!" >&2; wait"#],
        Transport::Stdio,
    );
    runtime.create(&launch).await.unwrap();
    runtime.start(launch.server_id).await.unwrap();
    let sleep_pid: i32 = logs_when(&runtime, launch.server_id, 1).await[0]
        .parse()
        .unwrap();

    let began = Instant::now();
    runtime
        .stop(launch.server_id, Duration::from_millis(500))
        .await
        .unwrap();
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "stop did not wait for the grace: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    assert_eq!(
        runtime
            .inspect(launch.server_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        InstanceState::Exited {
            exit_code: Some(128 + 9),
            oom_killed: false
        }
    );

    // The grandchild was in the group and died too (it may linger briefly as a zombie
    // until whoever inherited it reaps it).
    let gone = tokio::time::timeout(WAIT, async {
        loop {
            let stat =
                std::fs::read_to_string(format!("/proc/{sleep_pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "the sleep in the process group survived the stop"
    );
    runtime.remove(launch.server_id).await.unwrap();
}

#[tokio::test]
async fn the_environment_is_cleared_then_filled_and_args_are_not_interpreted() {
    let (runtime, dir) = runtime();
    let mut launch = spec(
        "/bin/sh",
        &[
            "-c",
            r#"echo "GREETING=$GREETING"; env | sort; echo "$0" "$1""#,
            "$HOME",
            "*",
        ],
        Transport::Http,
    );
    launch
        .env
        .insert("GREETING".into(), SecretString::from("hello there"));
    runtime.create(&launch).await.unwrap();
    runtime.start(launch.server_id).await.unwrap();
    wait_for_exit(&runtime, launch.server_id).await;

    let logs = logs_until(&runtime, launch.server_id, |logs| {
        logs.last().is_some_and(|line| line.starts_with('$'))
    })
    .await;
    assert_eq!(logs[0], "GREETING=hello there");
    // Arguments reach the program as they are: no shell of ours expanded them.
    assert_eq!(logs.last().map(String::as_str), Some("$HOME *"));
    let names: Vec<&str> = logs[1..logs.len() - 1]
        .iter()
        .filter_map(|line| line.split_once('='))
        .map(|(name, _)| name)
        .collect();
    for expected in ["GREETING", "HOME", "LANG", "PATH", "PORT"] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        !names.iter().any(|name| name.starts_with("CARGO")),
        "Berth's environment leaked: {names:?}"
    );
    let home = logs
        .iter()
        .find_map(|line| line.strip_prefix("HOME="))
        .unwrap();
    assert!(
        home.starts_with(dir.path().to_str().unwrap()),
        "HOME is {home}"
    );

    // The whole output is also in the log file.
    let file =
        std::fs::read_to_string(dir.path().join(format!("{}.log", launch.server_id))).unwrap();
    assert!(
        file.lines()
            .any(|line| line.ends_with(" GREETING=hello there")),
        "{file}"
    );
    runtime.remove(launch.server_id).await.unwrap();
    assert!(!dir
        .path()
        .join(format!("{}.log", launch.server_id))
        .exists());
}

#[tokio::test]
async fn http_servers_get_a_port_and_their_stdout_is_logged() {
    let (runtime, _dir) = runtime();
    let launch = spec(
        "/bin/sh",
        &["-c", r#"echo "port $PORT"; echo "oops" >&2; exec sleep 60"#],
        Transport::Http,
    );
    runtime.create(&launch).await.unwrap();
    assert!(
        runtime
            .connect(launch.server_id, Transport::Http)
            .await
            .is_err(),
        "not started"
    );
    runtime.start(launch.server_id).await.unwrap();

    let McpEndpoint::Http(url) = runtime
        .connect(launch.server_id, Transport::Http)
        .await
        .unwrap()
    else {
        panic!("an http server answered with stdio");
    };
    let mut logs = logs_when(&runtime, launch.server_id, 2).await;
    logs.sort();
    let port = logs[1].strip_prefix("port ").unwrap();
    assert_eq!(url, format!("http://127.0.0.1:{port}/mcp"));
    assert_eq!(logs[0], "oops");
    assert!(
        runtime
            .connect(launch.server_id, Transport::Stdio)
            .await
            .is_err(),
        "wrong transport"
    );
    runtime.remove(launch.server_id).await.unwrap();
}

#[tokio::test]
async fn logs_keep_the_last_lines_and_follow_until_the_process_ends() {
    let (runtime, _dir) = runtime();
    let script = r#"i=1; while [ $i -le 30 ]; do echo "line $i" >&2; i=$((i+1)); done; sleep 1; echo "late" >&2"#;
    let launch = spec("/bin/sh", &["-c", script], Transport::Stdio);
    runtime.create(&launch).await.unwrap();
    runtime.start(launch.server_id).await.unwrap();
    logs_when(&runtime, launch.server_id, 30).await;

    assert_eq!(
        runtime.logs(launch.server_id, 3).await.unwrap(),
        ["line 28", "line 29", "line 30"]
    );
    let followed = runtime.follow_logs(launch.server_id, 2).await.unwrap();
    let followed: Vec<String> = tokio::time::timeout(WAIT, followed.collect::<Vec<_>>())
        .await
        .expect("following must end when the process does")
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(followed, ["line 29", "line 30", "late"]);
    assert!(matches!(
        runtime.logs(Uuid::new_v4(), 3).await,
        Err(RuntimeError::NotFound)
    ));
    runtime.remove(launch.server_id).await.unwrap();
}

#[tokio::test]
async fn a_changed_spec_replaces_the_process() {
    let (runtime, _dir) = runtime();
    let mut launch = spec("cat", &[], Transport::Stdio);
    let first = runtime.create(&launch).await.unwrap();
    runtime.start(launch.server_id).await.unwrap();
    launch
        .env
        .insert("TOKEN".into(), SecretString::from("rotated"));
    let second = runtime.create(&launch).await.unwrap();
    assert_ne!(first, second);
    let status = runtime.inspect(launch.server_id).await.unwrap().unwrap();
    assert_eq!(
        (status.instance_id, status.state),
        (second, InstanceState::Created)
    );
    runtime.remove(launch.server_id).await.unwrap();
}

/// What the process manager asks before it relaunches a server whose process is missing:
/// only a process made by an earlier Berth ended with it; one this runtime made and
/// removed (a failure not yet recorded) is not to be brought back as if Berth restarted.
#[tokio::test]
async fn a_runtime_knows_the_processes_it_made_from_those_an_earlier_berth_made() {
    let (earlier, _dir) = runtime();
    let spec = spec("/bin/cat", &[], Transport::Stdio);
    let made_before = earlier.create(&spec).await.expect("created");
    assert!(earlier.made_by_this_run(&made_before));
    earlier.remove(spec.server_id).await.expect("removed");
    assert!(
        earlier.made_by_this_run(&made_before),
        "removing it does not make it an earlier Berth's"
    );

    let (now, _dir) = runtime();
    assert!(!now.made_by_this_run(&made_before));
    let made_now = now.create(&spec).await.expect("created");
    assert!(now.made_by_this_run(&made_now));
    assert!(
        !now.made_by_this_run("c0ffee"),
        "a container id is not a process of this run"
    );
    now.remove(spec.server_id).await.expect("removed");
}
