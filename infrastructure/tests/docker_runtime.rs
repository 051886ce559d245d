//! The Docker runtime against a real engine, with a tiny static test image built here
//! (no registry is needed). Skipped with a notice when no engine answers, unless
//! `BERTH_REQUIRE_DOCKER=1`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use berth_application::runtime::{
    ContainerRuntime, InstanceState, LaunchSpec, McpEndpoint, RuntimeError, StdioConnection,
};
use berth_domain::catalog::{Resources, RuntimeSpec, Transport};
use berth_infrastructure::runtime::docker::{
    container_name, LABEL_MANAGED, LABEL_OWNER, LABEL_SERVER_ID, LABEL_SPEC_HASH,
};
use berth_infrastructure::runtime::DockerRuntime;
use futures_util::StreamExt;
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;

/// The test program: `echo` copies stdin lines to stdout (and notes them on stderr),
/// `exit CODE MS` exits after a while, `lines N MS` writes N numbered lines to stderr,
/// `sleep` waits for a signal. It reports `GREETING` on stderr when set.
const FIXTURE_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "sleep";
    setvbuf(stdout, NULL, _IOLBF, 0);
    setvbuf(stderr, NULL, _IONBF, 0);
    const char *greeting = getenv("GREETING");
    if (greeting) fprintf(stderr, "GREETING=%s\n", greeting);
    if (!strcmp(mode, "echo")) {
        char line[4096];
        fprintf(stderr, "ready\n");
        while (fgets(line, sizeof line, stdin)) {
            fputs(line, stdout);
            fflush(stdout);
            fprintf(stderr, "got %s", line);
        }
        return 0;
    }
    if (!strcmp(mode, "exit") && argc > 3) {
        usleep(atoi(argv[3]) * 1000);
        return atoi(argv[2]);
    }
    if (!strcmp(mode, "lines") && argc > 3) {
        int n = atoi(argv[2]);
        for (int i = 1; i <= n; i++) fprintf(stderr, "line %d\n", i);
        printf("stdout says hi\n");
        usleep(atoi(argv[3]) * 1000);
        return 0;
    }
    if (!strcmp(mode, "sleep")) {
        printf("sleeping\n");
        for (;;) pause();
    }
    return 64;
}
"#;

const WAIT: Duration = Duration::from_secs(30);

fn require_docker() -> bool {
    std::env::var("BERTH_REQUIRE_DOCKER").is_ok_and(|value| value == "1")
}

/// The runtime, or `None` (after a notice) when no engine answers and none is required.
async fn engine() -> Option<DockerRuntime> {
    let runtime = match DockerRuntime::connect() {
        Ok(runtime) => runtime,
        Err(error) if !require_docker() => {
            eprintln!(
                "skipping: no Docker engine ({error}); set BERTH_REQUIRE_DOCKER=1 to fail instead"
            );
            return None;
        }
        Err(error) => panic!("BERTH_REQUIRE_DOCKER=1 but no Docker engine: {error}"),
    };
    if runtime.answers().await {
        return Some(runtime);
    }
    assert!(
        !require_docker(),
        "BERTH_REQUIRE_DOCKER=1 but the Docker engine does not answer"
    );
    eprintln!(
        "skipping: the Docker engine does not answer; set BERTH_REQUIRE_DOCKER=1 to fail instead"
    );
    None
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The fixture compiled statically and packed as a root filesystem tarball, once per
/// version of its source (kept in Cargo's scratch directory for later runs).
fn fixture_tarball() -> &'static PathBuf {
    static TARBALL: OnceLock<PathBuf> = OnceLock::new();
    TARBALL.get_or_init(|| {
        use sha2::Digest;
        let version = hex::encode(&sha2::Sha256::digest(FIXTURE_C)[..8]);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("berth-docker-fixture-{version}"));
        let tarball = dir.join("fixture.tar");
        if tarball.exists() {
            return tarball;
        }
        let scratch = dir.join(format!("build-{}", std::process::id()));
        let root = scratch.join("root");
        std::fs::create_dir_all(&root).unwrap();
        let source = scratch.join("fixture.c");
        std::fs::write(&source, FIXTURE_C).unwrap();
        run(Command::new("gcc")
            .args(["-static", "-O2", "-o"])
            .arg(root.join("fixture"))
            .arg(&source));
        let built = scratch.join("fixture.tar");
        run(Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&built)
            .arg("."));
        // A rename is atomic, so a concurrent test run sees a whole tarball or none.
        std::fs::rename(&built, &tarball).unwrap();
        let _ = std::fs::remove_dir_all(&scratch);
        tarball
    })
}

/// A locally imported image, removed when dropped.
struct TestImage {
    tag: String,
}

impl TestImage {
    fn build() -> Self {
        let tag = format!("berth-runtime-test:{}", Uuid::new_v4().simple());
        run(Command::new("docker")
            .args(["import", "-c", r#"ENTRYPOINT ["/fixture"]"#])
            .arg(fixture_tarball())
            .arg(&tag));
        Self { tag }
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.tag])
            .output();
    }
}

/// Removes the containers of the servers it tracks when dropped, even after a failure.
#[derive(Default)]
struct Containers(Vec<String>);

impl Containers {
    fn track(&mut self, server_id: Uuid) -> Uuid {
        self.0.push(container_name(server_id));
        server_id
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", name])
                .output();
        }
    }
}

fn spec(server_id: Uuid, image: &str, command: &[&str], transport: Transport) -> LaunchSpec {
    LaunchSpec {
        server_id,
        owner: "alice".into(),
        name: "fixture".into(),
        transport,
        runtime: RuntimeSpec::Docker {
            image: image.into(),
            command: command.iter().map(|part| (*part).to_owned()).collect(),
            port: (transport == Transport::Http).then_some(8080),
        },
        env: BTreeMap::new(),
        resources: Resources::default(),
    }
}

fn client() -> bollard::Docker {
    bollard::Docker::connect_with_defaults().unwrap()
}

async fn wait_for_exit(runtime: &DockerRuntime, server_id: Uuid) -> InstanceState {
    tokio::time::timeout(WAIT, async {
        loop {
            let state = runtime
                .inspect(server_id)
                .await
                .unwrap()
                .expect("container")
                .state;
            if matches!(state, InstanceState::Exited { .. }) {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the container did not exit")
}

async fn stdio(runtime: &DockerRuntime, server_id: Uuid) -> StdioConnection {
    match runtime.connect(server_id, Transport::Stdio).await.unwrap() {
        McpEndpoint::Stdio(connection) => connection,
        _ => panic!("a stdio server answered with a URL"),
    }
}

/// Sends each line and reads one line back per line sent, over one connection.
async fn round_trips(connection: StdioConnection, lines: &[&str]) -> Vec<String> {
    let StdioConnection { reader, mut writer } = connection;
    let mut reader = BufReader::new(reader);
    let mut answers = Vec::new();
    for line in lines {
        writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        writer.flush().await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(WAIT, reader.read_line(&mut answer))
            .await
            .expect("no answer")
            .unwrap();
        answers.push(answer);
    }
    answers
}

#[tokio::test]
async fn create_is_idempotent_and_locks_the_container_down() {
    let Some(runtime) = engine().await else {
        return;
    };
    let image = TestImage::build();
    let mut containers = Containers::default();
    let server_id = containers.track(Uuid::new_v4());
    let secret = format!("s3cr3t-{}", Uuid::new_v4());
    let mut launch = spec(server_id, &image.tag, &["sleep"], Transport::Stdio);
    launch
        .env
        .insert("API_TOKEN".into(), SecretString::from(secret.clone()));
    launch.resources = Resources {
        memory_mb: Some(64),
        cpus: Some(0.5),
        pids: Some(64),
    };

    let id = runtime.create(&launch).await.unwrap();
    assert_eq!(
        runtime.create(&launch).await.unwrap(),
        id,
        "a second create must find the first container"
    );

    let inspected = client()
        .inspect_container(&container_name(server_id), None)
        .await
        .unwrap();
    assert_eq!(inspected.id.as_deref(), Some(id.as_str()));
    let config = inspected.config.unwrap();
    let labels = config.labels.unwrap();
    assert_eq!(labels[LABEL_SERVER_ID], server_id.to_string());
    assert_eq!(labels[LABEL_OWNER], "alice");
    assert_eq!(labels[LABEL_MANAGED], "true");
    assert_eq!(labels[LABEL_SPEC_HASH].len(), 64);
    assert!(
        labels.values().all(|value| !value.contains(&secret)),
        "a label holds the secret"
    );
    assert!(config.env.unwrap().contains(&format!("API_TOKEN={secret}")));
    assert_eq!(config.open_stdin, Some(true));
    assert_eq!(config.stdin_once, Some(false));
    assert_eq!(config.tty, Some(false));

    let host = inspected.host_config.unwrap();
    assert_eq!(host.memory, Some(64 * 1024 * 1024));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.pids_limit, Some(64));
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.privileged, Some(false));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    assert!(host
        .security_opt
        .unwrap()
        .iter()
        .any(|opt| opt.starts_with("no-new-privileges")));
    assert!(host.tmpfs.unwrap().contains_key("/tmp"));
    // Whoever wrote the entry (operators may): nothing of the host reaches in.
    assert!(host.binds.unwrap_or_default().is_empty(), "no host mounts");
    assert!(host.mounts.unwrap_or_default().is_empty(), "no mounts");
    assert!(host.devices.unwrap_or_default().is_empty(), "no devices");
    assert_ne!(
        host.network_mode.as_deref(),
        Some("host"),
        "no host network"
    );
    assert_ne!(host.pid_mode.as_deref(), Some("host"), "no host processes");
    assert!(
        host.cap_add.unwrap_or_default().is_empty(),
        "no capability added"
    );
    assert_eq!(
        host.restart_policy
            .and_then(|policy| policy.name)
            .map(|name| name.to_string())
            .as_deref(),
        Some("no")
    );

    // A changed configuration replaces the container instead of reusing a stale one.
    launch.env.insert(
        "API_TOKEN".into(),
        SecretString::from(format!("{secret}-rotated")),
    );
    let replaced = runtime.create(&launch).await.unwrap();
    assert_ne!(replaced, id);
    assert_eq!(
        runtime
            .inspect(server_id)
            .await
            .unwrap()
            .unwrap()
            .instance_id,
        replaced
    );

    runtime.remove(server_id).await.unwrap();
}

#[tokio::test]
async fn start_stop_and_remove_are_idempotent() {
    let Some(runtime) = engine().await else {
        return;
    };
    let image = TestImage::build();
    let mut containers = Containers::default();
    let server_id = containers.track(Uuid::new_v4());
    let launch = spec(server_id, &image.tag, &["sleep"], Transport::Stdio);

    assert!(runtime.inspect(server_id).await.unwrap().is_none());
    assert!(matches!(
        runtime.start(server_id).await,
        Err(RuntimeError::NotFound)
    ));
    runtime
        .stop(server_id, Duration::from_secs(1))
        .await
        .unwrap();
    runtime.remove(server_id).await.unwrap();

    let id = runtime.create(&launch).await.unwrap();
    let status = runtime.inspect(server_id).await.unwrap().unwrap();
    assert_eq!(
        (status.server_id, status.instance_id.as_str(), status.state),
        (server_id, id.as_str(), InstanceState::Created)
    );

    runtime.start(server_id).await.unwrap();
    runtime.start(server_id).await.unwrap();
    assert_eq!(
        runtime.inspect(server_id).await.unwrap().unwrap().state,
        InstanceState::Running
    );

    // The init in front of the fixture forwards SIGTERM, so this is quick.
    let began = std::time::Instant::now();
    runtime
        .stop(server_id, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(8),
        "stop waited for SIGKILL: {:?}",
        began.elapsed()
    );
    runtime
        .stop(server_id, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(matches!(
        runtime.inspect(server_id).await.unwrap().unwrap().state,
        InstanceState::Exited {
            oom_killed: false,
            ..
        }
    ));

    runtime.remove(server_id).await.unwrap();
    runtime.remove(server_id).await.unwrap();
    assert!(runtime.inspect(server_id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_container_that_exits_by_itself_reports_its_code() {
    let Some(runtime) = engine().await else {
        return;
    };
    let image = TestImage::build();
    let mut containers = Containers::default();
    let server_id = containers.track(Uuid::new_v4());
    runtime
        .create(&spec(
            server_id,
            &image.tag,
            &["exit", "7", "200"],
            Transport::Stdio,
        ))
        .await
        .unwrap();
    runtime.start(server_id).await.unwrap();

    assert_eq!(
        wait_for_exit(&runtime, server_id).await,
        InstanceState::Exited {
            exit_code: Some(7),
            oom_killed: false
        }
    );
    let listed = runtime.list().await.unwrap();
    let ours = listed
        .iter()
        .find(|status| status.server_id == server_id)
        .expect("listed");
    assert_eq!(
        ours.state,
        InstanceState::Exited {
            exit_code: Some(7),
            oom_killed: false
        }
    );
    runtime.remove(server_id).await.unwrap();
}

#[tokio::test]
async fn a_missing_image_is_reported_as_unavailable() {
    let Some(runtime) = engine().await else {
        return;
    };
    let mut containers = Containers::default();
    let server_id = containers.track(Uuid::new_v4());
    let image = format!("berth-test-missing-{}:v1", Uuid::new_v4().simple());
    let outcome = tokio::time::timeout(
        Duration::from_secs(120),
        runtime.create(&spec(server_id, &image, &[], Transport::Stdio)),
    )
    .await
    .expect("pulling did not give up");
    match outcome {
        Err(error @ RuntimeError::ImageUnavailable { .. }) => {
            eprintln!("{error}");
            let RuntimeError::ImageUnavailable {
                image: named,
                reason,
            } = &error
            else {
                unreachable!()
            };
            assert_eq!(named, &image);
            assert!(reason.contains("could not be pulled"), "{reason}");
            assert!(error.to_string().contains(&image), "{error}");
        }
        other => panic!("expected ImageUnavailable, got {other:?}"),
    }
    assert!(runtime.inspect(server_id).await.unwrap().is_none());
}

#[tokio::test]
async fn logs_hold_the_last_lines_and_the_environment_reaches_the_server() {
    let Some(runtime) = engine().await else {
        return;
    };
    let image = TestImage::build();
    let mut containers = Containers::default();
    let server_id = containers.track(Uuid::new_v4());
    let mut launch = spec(
        server_id,
        &image.tag,
        &["lines", "20", "300"],
        Transport::Stdio,
    );
    launch
        .env
        .insert("GREETING".into(), SecretString::from("hello from berth"));
    runtime.create(&launch).await.unwrap();
    runtime.start(server_id).await.unwrap();
    wait_for_exit(&runtime, server_id).await;

    assert_eq!(
        runtime.logs(server_id, 3).await.unwrap(),
        ["line 18", "line 19", "line 20"]
    );
    let all = runtime.logs(server_id, 100).await.unwrap();
    assert_eq!(
        all.first().map(String::as_str),
        Some("GREETING=hello from berth")
    );
    // A stdio server's stdout is its MCP channel, not part of its logs.
    assert!(
        !all.iter().any(|line| line.contains("stdout says hi")),
        "{all:?}"
    );
    assert!(runtime.logs(server_id, 0).await.unwrap().is_empty());

    let followed: Vec<_> = tokio::time::timeout(
        WAIT,
        runtime
            .follow_logs(server_id, 2)
            .await
            .unwrap()
            .collect::<Vec<_>>(),
    )
    .await
    .expect("following a stopped container's logs must end");
    let followed: Vec<String> = followed.into_iter().map(Result::unwrap).collect();
    assert_eq!(followed, ["line 19", "line 20"]);

    assert!(matches!(
        runtime.logs(Uuid::new_v4(), 3).await,
        Err(RuntimeError::NotFound)
    ));
    runtime.remove(server_id).await.unwrap();
}

#[tokio::test]
async fn stdio_round_trips_and_a_second_client_can_attach_after_the_first() {
    let Some(runtime) = engine().await else {
        return;
    };
    let image = TestImage::build();
    let mut containers = Containers::default();
    let server_id = containers.track(Uuid::new_v4());
    runtime
        .create(&spec(server_id, &image.tag, &["echo"], Transport::Stdio))
        .await
        .unwrap();
    runtime.start(server_id).await.unwrap();

    // Only stdout comes back: the fixture's "got …" lines on stderr would otherwise
    // arrive before the second answer.
    assert_eq!(
        round_trips(stdio(&runtime, server_id).await, &["ping", "pong"]).await,
        ["ping\n", "pong\n"]
    );
    let mut followed = runtime.follow_logs(server_id, 0).await.unwrap();
    // The engine registers a follower a moment after it is asked.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        round_trips(stdio(&runtime, server_id).await, &["again"]).await,
        ["again\n"]
    );
    // The first client's trailing stderr line ("got pong") is written just after its
    // answer and may reach the follower late under load; nothing else may come first.
    let next = tokio::time::timeout(WAIT, async {
        loop {
            let line = followed
                .next()
                .await
                .expect("the log stream ended")
                .unwrap();
            if line != "got pong" {
                return line;
            }
        }
    })
    .await
    .expect("no live log line");
    assert_eq!(next, "got again");
    drop(followed);
    assert_eq!(
        runtime.inspect(server_id).await.unwrap().unwrap().state,
        InstanceState::Running
    );

    let logs = runtime.logs(server_id, 10).await.unwrap();
    assert!(
        logs.contains(&"got ping".to_owned()) && logs.contains(&"got pong".to_owned()),
        "{logs:?}"
    );
    runtime.remove(server_id).await.unwrap();
}

#[tokio::test]
async fn http_servers_publish_their_port_on_loopback_only() {
    let Some(runtime) = engine().await else {
        return;
    };
    let image = TestImage::build();
    let mut containers = Containers::default();
    let server_id = containers.track(Uuid::new_v4());
    runtime
        .create(&spec(server_id, &image.tag, &["sleep"], Transport::Http))
        .await
        .unwrap();
    assert!(
        runtime.connect(server_id, Transport::Http).await.is_err(),
        "not running yet"
    );
    runtime.start(server_id).await.unwrap();

    let McpEndpoint::Http(url) = runtime.connect(server_id, Transport::Http).await.unwrap() else {
        panic!("an http server answered with stdio");
    };
    let port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix("/mcp"))
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("unexpected endpoint {url}"));
    assert_ne!(port, 0);

    let inspected = client()
        .inspect_container(&container_name(server_id), None)
        .await
        .unwrap();
    let bindings = inspected.host_config.unwrap().port_bindings.unwrap();
    let binding = &bindings["8080/tcp"].as_ref().unwrap()[0];
    assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));

    // For http servers stdout is a log like stderr.
    let logs = tokio::time::timeout(WAIT, async {
        loop {
            let logs = runtime.logs(server_id, 10).await.unwrap();
            if !logs.is_empty() {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(logs, ["sleeping"]);
    runtime.remove(server_id).await.unwrap();
}

#[tokio::test]
async fn list_finds_only_containers_berth_labelled() {
    let Some(runtime) = engine().await else {
        return;
    };
    let image = TestImage::build();
    let mut containers = Containers::default();
    let server_id = containers.track(Uuid::new_v4());
    let id = runtime
        .create(&spec(server_id, &image.tag, &["sleep"], Transport::Stdio))
        .await
        .unwrap();

    let stranger_name = format!("berth-test-stranger-{}", Uuid::new_v4().simple());
    containers.0.push(stranger_name.clone());
    let stranger =
        run(Command::new("docker").args(["create", "--name", &stranger_name, &image.tag, "sleep"]));

    let listed = runtime.list().await.unwrap();
    let ours = listed
        .iter()
        .find(|status| status.server_id == server_id)
        .expect("ours is listed");
    assert_eq!(
        (ours.instance_id.as_str(), &ours.state),
        (id.as_str(), &InstanceState::Created)
    );
    assert!(
        listed.iter().all(|status| status.instance_id != stranger),
        "an unlabelled container was listed"
    );
    runtime.remove(server_id).await.unwrap();
}
