//! Python tools the tests drive, installed from PyPI into a virtual environment of their
//! own under the target directory (created once, reused by later runs): the machine's
//! Python stays untouched.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The schemathesis release the OpenAPI conformance test runs.
pub const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// The third-party MCP server (the reference time server) the tests run behind Berth.
pub const MCP_SERVER_TIME: &str = "mcp-server-time==2026.10.19";

static MCP_SERVER_TIME_CLI: OnceLock<PathBuf> = OnceLock::new();

static SCHEMATHESIS_CLI: OnceLock<PathBuf> = OnceLock::new();

/// The `st` command of [`SCHEMATHESIS`], installing it first when needed.
///
/// # Panics
/// When `python3 -m venv` or `pip install` fails (their output is in the message).
pub fn schemathesis() -> PathBuf {
    SCHEMATHESIS_CLI
        .get_or_init(|| {
            let venv = venv_dir();
            install(Path::new("python3"), &venv, SCHEMATHESIS);
            venv.join("bin/st")
        })
        .clone()
}

/// The `mcp-server-time` command of [`MCP_SERVER_TIME`], in a virtual environment every
/// user may run: as root, Berth runs each process server as a user of its own, which
/// can reach neither a checkout below a root-only directory nor an interpreter installed
/// under `/root` (pyenv). There it is made with the system's `/usr/bin/python3` in
/// `BERTH_TEST_SCRATCH`, once per run; otherwise beside the other tools, once.
///
/// # Panics
/// When the environment cannot be made or the package installed.
pub fn mcp_server_time() -> PathBuf {
    MCP_SERVER_TIME_CLI
        .get_or_init(|| {
            let as_root = nix::unistd::Uid::effective().is_root();
            let (python, venv) = if as_root {
                let scratch = std::env::var_os("BERTH_TEST_SCRATCH")
                    .map(PathBuf::from)
                    .unwrap_or_else(std::env::temp_dir);
                (
                    PathBuf::from("/usr/bin/python3"),
                    scratch.join("python-servers"),
                )
            } else {
                (
                    PathBuf::from("python3"),
                    venv_dir().with_file_name("python-servers"),
                )
            };
            install(&python, &venv, MCP_SERVER_TIME);
            if as_root {
                // Readable and runnable by the servers' own users.
                run(Command::new("chmod").args(["-R", "a+rX"]).arg(&venv));
            }
            venv.join("bin/mcp-server-time")
        })
        .clone()
}

/// Installs `package` into the virtual environment `venv` (made with `python` when
/// missing), once: a marker file remembers what was installed.
fn install(python: &Path, venv: &Path, package: &str) {
    let installed = venv.join(format!(".installed-{package}"));
    if installed.exists() {
        return;
    }
    if !venv.join("bin/pip").exists() {
        run(Command::new(python).args(["-m", "venv"]).arg(venv));
    }
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        package,
    ]));
    std::fs::write(&installed, b"")
        .unwrap_or_else(|e| panic!("marking {}: {e}", installed.display()));
}

/// `<target>/python-tools`.
fn venv_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("python-tools")
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The official Python MCP SDK, the gateway tests' client.
pub const MCP_SDK: &str = "mcp==2.3.0";

/// A Python interpreter with [`MCP_SDK`] installed, in an environment of its own beside
/// the other tools (made once; tests in other processes may install theirs meanwhile).
///
/// # Panics
/// When the environment cannot be made or the package installed.
pub fn mcp_sdk_python() -> PathBuf {
    MCP_SDK_PYTHON
        .get_or_init(|| {
            let venv = venv_dir().with_file_name("python-mcp-client");
            install(Path::new("python3"), &venv, MCP_SDK);
            venv.join("bin/python")
        })
        .clone()
}

static MCP_SDK_PYTHON: OnceLock<PathBuf> = OnceLock::new();
