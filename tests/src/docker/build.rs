//! Building the fixture: a static binary from its own one-binary package, packed as
//! the only file of an imported image; or a plain host build.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{
    run_checked, run_with_input, run_with_timeout, BIN, FIXTURE_PATH_IN_IMAGE, FIXTURE_REPOSITORY,
};

fn workspace_root() -> PathBuf {
    let tests_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests_crate.parent().unwrap_or(tests_crate).to_path_buf()
}

fn main_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `cargo`: the one running these tests when there is one.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Builds the static fixture and imports its image unless present; returns the tag.
pub(super) fn fixture_image() -> Result<String, String> {
    let target_dir = main_target_dir().join("fixture");
    std::fs::create_dir_all(&target_dir)
        .map_err(|e| format!("creating {}: {e}", target_dir.display()))?;
    let _lock = FileLock::acquire(&target_dir.join("berth-fixture-image.lock"))?;

    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let manifest = write_fixture_manifest(&target_dir)?;
    let mut build = cargo();
    build
        .args(["build", "--release", "--target", &triple, "--bin", BIN])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        // --target keeps these flags off build scripts and proc macros; the variables
        // removed would override RUSTFLAGS or redirect the output.
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR");
    run_checked(build, "the static build of the fixture")?;
    let binary = target_dir.join(&triple).join("release").join(BIN);
    let bytes = std::fs::read(&binary).map_err(|e| format!("reading {}: {e}", binary.display()))?;
    let hash = hex::encode(Sha256::digest(&bytes));
    let tag = format!("{FIXTURE_REPOSITORY}:{}", &hash[..12]);

    let mut inspect = Command::new("docker");
    inspect.args(["image", "inspect", "--format", "{{.Id}}", &tag]);
    if run_with_timeout(inspect, Duration::from_secs(30)).is_some_and(|o| o.status.success()) {
        return Ok(tag);
    }
    remove_stale_tags(&tag);
    let archive = single_file_tar(&FIXTURE_PATH_IN_IMAGE[1..], &bytes, 0o755);
    let mut import = Command::new("docker");
    import.args([
        "import",
        "--change",
        &format!(r#"ENTRYPOINT ["{FIXTURE_PATH_IN_IMAGE}"]"#),
        "--change",
        "LABEL org.opencontainers.image.title=berth-fixture-mcp",
        "--change",
        &format!("LABEL {MADE_BY_TEST_KIT}"),
        "-",
        &tag,
    ]);
    run_with_input(import, &archive, "docker import of the fixture")?;
    Ok(tag)
}

/// Writes a one-binary package for the fixture's source under `dir` and returns its
/// manifest. Built as `-p berth-tests`, the fixture would drag in (and rebuild, in
/// release mode, after every change anywhere in the workspace) everything the test kit
/// links; the fixture itself needs only `serde_json` and `libc`. The workspace's lock
/// file pins their versions, so this builds offline from the local registry cache.
fn write_fixture_manifest(dir: &Path) -> Result<PathBuf, String> {
    let root = workspace_root();
    let package = dir.join("package");
    std::fs::create_dir_all(&package)
        .map_err(|e| format!("creating {}: {e}", package.display()))?;
    let source = root.join("tests/src/bin").join(format!("{BIN}.rs"));
    let manifest = format!(
        r#"# Written by berth-tests' docker kit: the fixture MCP server alone, for static builds.
[package]
name = "{BIN}"
version = "{version}"
edition = "2021"
publish = false

[[bin]]
name = "{BIN}"
path = {source:?}

[dependencies]
serde_json = "1"
libc = "0.2"

[workspace]
"#,
        version = workspace_version(&root),
        source = source.display().to_string(),
    );
    let path = package.join("Cargo.toml");
    write_if_changed(&path, manifest.as_bytes())?;
    let lock = std::fs::read(root.join("Cargo.lock"))
        .map_err(|e| format!("reading the workspace's Cargo.lock: {e}"))?;
    // Cargo trims the copy to what this package uses; copying again only when the
    // workspace's lock changes keeps that trimmed copy (and the build) up to date.
    let stamp = package.join("Cargo.lock.source");
    if std::fs::read(&stamp).ok().as_deref() != Some(&lock[..]) {
        std::fs::write(package.join("Cargo.lock"), &lock)
            .and_then(|()| std::fs::write(&stamp, &lock))
            .map_err(|e| format!("copying Cargo.lock to {}: {e}", package.display()))?;
    }
    Ok(path)
}

/// `version` of `[workspace.package]`, for the fixture's `serverInfo`.
fn workspace_version(root: &Path) -> String {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    manifest
        .lines()
        .skip_while(|line| line.trim() != "[workspace.package]")
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "version").then(|| value.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "0.0.0".to_owned())
}

/// Writes `contents` unless the file holds them already (so cargo sees no change).
fn write_if_changed(path: &Path, contents: &[u8]) -> Result<(), String> {
    if std::fs::read(path).ok().as_deref() == Some(contents) {
        return Ok(());
    }
    std::fs::write(path, contents).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The label on every image the test kit imports: only those are ever removed by it.
pub(super) const MADE_BY_TEST_KIT: &str = "berth.test-kit=fixture";

/// Removes fixture images that earlier test runs imported, so they do not pile up. Images
/// a person made under the same name (`berth-fixture-mcp:dev`, as the README shows) have
/// no test-kit label and stay; so do ones still used by a container (no `-f`).
pub(super) fn remove_stale_tags(current: &str) {
    let mut list = Command::new("docker");
    list.args([
        "images",
        FIXTURE_REPOSITORY,
        "--filter",
        &format!("label={MADE_BY_TEST_KIT}"),
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    let Some(output) = run_with_timeout(list, Duration::from_secs(30)) else {
        return;
    };
    for tag in String::from_utf8_lossy(&output.stdout).lines() {
        if tag != current && tag.starts_with(FIXTURE_REPOSITORY) {
            let mut remove = Command::new("docker");
            remove.args(["rmi", tag]);
            let _ = run_with_timeout(remove, Duration::from_secs(30));
        }
    }
}

/// Builds the fixture for this host into the main target dir; returns its path.
pub(super) fn host_binary() -> Result<PathBuf, String> {
    let mut build = cargo();
    build.args(["build", "-p", "berth-tests", "--bin", BIN]);
    run_checked(build, "the build of the fixture")?;
    let path = main_target_dir().join("debug").join(BIN);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "cargo built it, but {} does not exist",
            path.display()
        ))
    }
}

/// A POSIX tar archive holding one regular file owned by root.
fn single_file_tar(name: &str, contents: &[u8], mode: u32) -> Vec<u8> {
    fn octal(field: &mut [u8], value: u64) {
        let digits = format!("{value:0width$o}", width = field.len() - 1);
        field[..digits.len()].copy_from_slice(digits.as_bytes());
    }
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut header[100..108], u64::from(mode));
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    octal(&mut header[124..136], contents.len() as u64);
    octal(&mut header[136..148], 0);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[265..269].copy_from_slice(b"root");
    header[297..301].copy_from_slice(b"root");
    // The checksum is computed with its own field read as spaces.
    header[148..156].fill(b' ');
    let checksum: u64 = header.iter().map(|b| u64::from(*b)).sum();
    let digits = format!("{checksum:06o}\0 ");
    header[148..156].copy_from_slice(digits.as_bytes());

    let padding = (512 - contents.len() % 512) % 512;
    let mut archive = Vec::with_capacity(512 + contents.len() + padding + 1024);
    archive.extend_from_slice(&header);
    archive.extend_from_slice(contents);
    archive.resize(archive.len() + padding + 1024, 0);
    archive
}

/// An exclusive `flock` on a file, released when dropped (or when the process dies).
struct FileLock(File);

impl FileLock {
    fn acquire(path: &Path) -> Result<Self, String> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| format!("opening the lock file {}: {e}", path.display()))?;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Self(file));
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("locking {}: {error}", path.display()));
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: unlocking the descriptor this value owns.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tar_header_is_well_formed() {
        let archive = single_file_tar("berth-fixture-mcp", b"hello", 0o755);
        assert_eq!(archive.len(), 512 * 4);
        assert_eq!(&archive[..17], b"berth-fixture-mcp");
        assert_eq!(&archive[100..107], b"0000755");
        assert_eq!(&archive[124..135], b"00000000005");
        assert_eq!(&archive[512..517], b"hello");
        let mut copy = archive[..512].to_vec();
        copy[148..156].fill(b' ');
        let sum: u64 = copy.iter().map(|b| u64::from(*b)).sum();
        assert_eq!(
            std::str::from_utf8(&archive[148..154]).unwrap(),
            format!("{sum:06o}")
        );
    }
}
