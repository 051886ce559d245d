//! `berth users …` and `berth keys …` against the embedded cluster: users and keys made
//! from the command line exist, keys are printed once and stored as hashes, revoking
//! works, bad input fails with a clear message, and every change is a `system:cli` event.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn berth(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .env_remove("DATABASE_URL")
        .env_remove("BERTH_DATABASE_URL")
        .env_remove("BERTH_MASTER_KEY")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("running berth")
}

fn ok(data_dir: &Path, args: &[&str]) -> String {
    let out = berth(data_dir, args);
    assert!(
        out.status.success(),
        "berth {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("berth-identity-cli-")
        .tempdir_in("/tmp")
        .expect("a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("permissions");
    let path = dir.path().join("data");
    (dir, path)
}

#[test]
fn users_and_keys_are_managed_from_the_command_line() {
    let (_guard, dir) = data_dir();
    let created = ok(&dir, &["users", "create", "ann", "--role", "operator"]);
    assert!(created.contains("created user ann"), "{created}");

    let refused = berth(&dir, &["users", "create", "ann", "--role", "viewer"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already exists"));
    let bad_role = berth(&dir, &["users", "create", "bob", "--role", "root"]);
    assert!(!bad_role.status.success());
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("unknown role"));

    let key = ok(&dir, &["keys", "create", "--user", "ann", "--name", "ci"]);
    let key = key.trim();
    assert!(key.starts_with("berth_") && key.len() == 70, "{key}");

    let users = ok(&dir, &["users", "list"]);
    assert!(
        users
            .lines()
            .any(|l| l.contains("ann") && l.contains("operator") && l.contains("active")),
        "{users}"
    );

    let keys = ok(&dir, &["keys", "list", "--user", "ann"]);
    let line = keys
        .lines()
        .find(|l| l.contains(&key[..14]))
        .unwrap_or_else(|| panic!("the key's prefix is listed: {keys}"));
    assert!(!keys.contains(key), "the key itself is never listed");
    assert!(line.contains("active"), "{line}");
    let key_id = line
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();

    ok(&dir, &["keys", "revoke", &key_id]);
    let keys = ok(&dir, &["keys", "list", "--user", "ann"]);
    assert!(
        keys.lines()
            .any(|l| l.starts_with(&key_id) && l.contains("revoked")),
        "{keys}"
    );
    let again = berth(&dir, &["keys", "revoke", &key_id]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("revoked"));

    ok(&dir, &["users", "disable", "ann"]);
    let users = ok(&dir, &["users", "list"]);
    assert!(
        users
            .lines()
            .any(|l| l.contains("ann") && l.contains("disabled")),
        "{users}"
    );
    let on_disabled = berth(&dir, &["keys", "create", "--user", "ann"]);
    assert!(!on_disabled.status.success());
    let unknown = berth(&dir, &["keys", "create", "--user", "nobody"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not found"));

    // Every change above is an event on the users' hash chains, which stay intact.
    ok(&dir, &["verify"]);
}
