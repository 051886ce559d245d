//! Docker for tests: whether an engine answers, the fixture MCP server packed as a local
//! image (no registry is reachable, so images are built here), and the fixture binary
//! for tests that run it as a plain process.
//!
//! The image holds one file, a statically linked `berth-fixture-mcp`, and is tagged
//! after the binary's hash, so it is imported once per change of the fixture and reused
//! by every later test process.

mod build;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// The repository name of the fixture image; the tag is a hash of the binary.
pub const FIXTURE_REPOSITORY: &str = "berth-fixture-mcp";

/// The fixture's path inside its image (the only file there).
pub const FIXTURE_PATH_IN_IMAGE: &str = "/berth-fixture-mcp";

const BIN: &str = "berth-fixture-mcp";
/// How long `docker info` may take before the engine counts as absent.
const INFO_TIMEOUT: Duration = Duration::from_secs(10);

static AVAILABLE: OnceLock<bool> = OnceLock::new();
static IMAGE: OnceCell<String> = OnceCell::const_new();
static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Whether a Docker engine answers `docker info` (through the CLI, within a few
/// seconds). Asked once per process.
pub fn docker_available() -> bool {
    *AVAILABLE.get_or_init(|| {
        let mut info = Command::new("docker");
        info.args(["info", "--format", "{{.ServerVersion}}"]);
        matches!(run_with_timeout(info, INFO_TIMEOUT), Some(output) if output.status.success())
    })
}

/// For the first line of a test that needs Docker: `true` when an engine answers;
/// otherwise prints "skipping: no Docker engine" and returns `false`, so the test can
/// return early.
///
/// # Panics
/// When no engine answers and `BERTH_REQUIRE_DOCKER=1`, so a CI run that is meant to
/// exercise Docker cannot pass by skipping.
pub fn require_docker() -> bool {
    if docker_available() {
        return true;
    }
    if std::env::var("BERTH_REQUIRE_DOCKER").is_ok_and(|v| v == "1") {
        panic!(
            "BERTH_REQUIRE_DOCKER=1 but no Docker engine answers `docker info`: \
             start one (e.g. `dockerd > /tmp/dockerd.log 2>&1 &`) or unset BERTH_REQUIRE_DOCKER"
        );
    }
    eprintln!("skipping: no Docker engine");
    false
}

/// The tag (`berth-fixture-mcp:<hash>`) of an image whose entrypoint is the fixture MCP
/// server, building the static binary and importing the image when needed.
///
/// The binary is built from `tests/src/bin/berth-fixture-mcp.rs` with `+crt-static`, as
/// a package of its own, into `<target>/fixture` (its own target dir, so these flags do
/// not invalidate the main build, and so this build does not wait on the lock of the
/// `cargo test` that runs it). Once per process; a file lock keeps concurrent test
/// processes from building or importing twice.
///
/// # Panics
/// When the build or the import fails (the message carries cargo's or docker's words).
pub async fn fixture_image() -> String {
    IMAGE
        .get_or_init(|| async {
            tokio::task::spawn_blocking(build::fixture_image)
                .await
                .unwrap_or_else(|e| panic!("building the fixture image panicked: {e}"))
                .unwrap_or_else(|e| panic!("building the fixture image: {e}"))
        })
        .await
        .clone()
}

/// Removes the fixture images earlier test runs imported, all but `current`; images of
/// the same name that the test kit did not make stay.
pub fn remove_stale_fixture_images(current: &str) {
    build::remove_stale_tags(current);
}

/// The fixture binary built for this host, for tests that run it as a local process:
/// `BERTH_FIXTURE_BIN` when set, else the one cargo built next to the running test
/// (it does for this package's integration tests), else built now.
///
/// # Panics
/// When it has to be built and the build fails.
pub fn fixture_binary() -> PathBuf {
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("BERTH_FIXTURE_BIN") {
                return PathBuf::from(path);
            }
            // Test executables live in <target>/<profile>/deps/.
            let beside_tests = std::env::current_exe().ok().and_then(|exe| {
                let profile_dir = exe.parent()?.parent()?;
                Some(profile_dir.join(BIN))
            });
            let built = match beside_tests.filter(|p| p.is_file()) {
                Some(path) => path,
                None => build::host_binary().unwrap_or_else(|e| panic!("building {BIN}: {e}")),
            };
            runnable_by_server_users(built)
        })
        .clone()
}

/// `binary`, or a copy of it every user may run. As root, Berth runs each process server
/// as a user of its own, which cannot run a program below a directory only root may
/// enter (a checkout under `/root`, or in a `mktemp -d` directory). The copy goes to
/// `BERTH_TEST_SCRATCH` (which `tests/run.sh` creates and removes) or the temporary
/// directory, under a name that changes with the binary.
fn runnable_by_server_users(binary: PathBuf) -> PathBuf {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let searchable_by_all = binary
        .ancestors()
        .skip(1)
        .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    if !nix::unistd::Uid::effective().is_root() || searchable_by_all {
        return binary;
    }
    let meta =
        std::fs::metadata(&binary).unwrap_or_else(|e| panic!("reading {}: {e}", binary.display()));
    let scratch = std::env::var_os("BERTH_TEST_SCRATCH")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = scratch.join(format!("{BIN}-{}-{}", meta.len(), meta.mtime()));
    let copy = dir.join(BIN);
    if !copy.is_file() {
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)))
            .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        // Copied under a name of its own, then renamed: concurrent test processes never
        // run a half-written file.
        let partial = dir.join(format!(".{BIN}.{}", std::process::id()));
        std::fs::copy(&binary, &partial)
            .and_then(|_| {
                std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
            })
            .and_then(|()| std::fs::rename(&partial, &copy))
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", binary.display(), copy.display()));
    }
    copy
}

/// Removes a container (`docker rm -f -v`) when dropped, whether the test passed or
/// panicked. Create it before starting the container it names.
#[derive(Debug)]
pub struct ContainerCleanup {
    name: String,
}

impl ContainerCleanup {
    /// Removes the container called `name` on drop.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ContainerCleanup {
    fn drop(&mut self) {
        let mut remove = Command::new("docker");
        remove.args(["rm", "-f", "-v", &self.name]);
        if run_with_timeout(remove, Duration::from_secs(30)).is_none() {
            eprintln!("warning: could not remove container {}", self.name);
        }
    }
}

/// Runs `command` to completion with its output captured; an error carrying the end of
/// its standard error when it fails.
fn run_checked(mut command: Command, what: &str) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", command.get_program()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}",
            output.status,
            tail(&output.stderr)
        ))
    }
}

fn run_with_input(mut command: Command, input: &[u8], what: &str) -> Result<(), String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", command.get_program()))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| format!("{what}: no stdin"))?;
    // Written from a thread while the child's output is drained here, so a child that
    // fills its pipes cannot deadlock against us.
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child
        .wait_with_output()
        .map_err(|e| format!("{what}: {e}"))?;
    let written = writer
        .join()
        .map_err(|_| format!("{what}: the writer panicked"))?;
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}",
            output.status,
            tail(&output.stderr)
        ));
    }
    written.map_err(|e| format!("{what}: writing its input: {e}"))
}

/// Runs `command` with output captured, killing it after `timeout`; `None` when it
/// cannot be started or runs too long.
fn run_with_timeout(mut command: Command, timeout: Duration) -> Option<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            // The output of the commands run here is small enough to sit in the pipes.
            Ok(Some(_)) => return child.wait_with_output().ok(),
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
