//! Python tools the tests drive, installed from PyPI into a virtual environment of their
//! own under the target directory (created once, reused by later runs): the machine's
//! Python stays untouched.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The schemathesis release the OpenAPI conformance test runs.
pub const SCHEMATHESIS: &str = "schemathesis==4.32.5";

static SCHEMATHESIS_CLI: OnceLock<PathBuf> = OnceLock::new();

/// The `st` command of [`SCHEMATHESIS`], installing it first when needed.
///
/// # Panics
/// When `python3 -m venv` or `pip install` fails (their output is in the message).
pub fn schemathesis() -> PathBuf {
    SCHEMATHESIS_CLI
        .get_or_init(|| {
            let venv = venv_dir();
            let installed = venv.join(format!(".installed-{SCHEMATHESIS}"));
            if !installed.exists() {
                if !venv.join("bin/pip").exists() {
                    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
                }
                run(Command::new(venv.join("bin/pip")).args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    SCHEMATHESIS,
                ]));
                std::fs::write(&installed, b"")
                    .unwrap_or_else(|e| panic!("marking {}: {e}", installed.display()));
            }
            venv.join("bin/st")
        })
        .clone()
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
