//! `berth events export` and `berth events import` as an operator runs them, on the
//! embedded cluster: the export on standard output and in a file are the same bytes,
//! `--after` cuts it exactly, an import into another data directory (with the data keys
//! and the master key) verifies, exports the same file again, lists the same users and
//! takes new commands; importing twice or an altered file is refused and writes nothing.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn berth(data_dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .env_remove("DATABASE_URL")
        .env_remove("BERTH_DATABASE_URL")
        .env_remove("BERTH_MASTER_KEY")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running berth");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).expect("writing to berth");
    }
    child.wait_with_output().expect("waiting for berth")
}

fn ok(data_dir: &Path, args: &[&str]) -> Output {
    let out = berth(data_dir, args, None);
    assert!(
        out.status.success(),
        "berth {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A directory the cluster's user can reach, and a data directory inside it.
fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("berth-transfer-cli-")
        .tempdir_in("/tmp")
        .expect("a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("permissions");
    let path = dir.path().join("data");
    (dir, path)
}

#[test]
fn the_event_log_moves_to_another_data_directory() {
    let (_source_guard, source) = data_dir();
    ok(&source, &["users", "create", "ann", "--role", "operator"]);
    ok(
        &source,
        &["keys", "create", "--user", "ann", "--name", "ci"],
    );
    ok(&source, &["users", "create", "bob", "--role", "viewer"]);
    ok(&source, &["users", "disable", "bob"]);

    let printed = ok(&source, &["events", "export"]);
    let file = printed.stdout.clone();
    let lines: Vec<&str> = std::str::from_utf8(&file).expect("UTF-8").lines().collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let position = |line: &str| -> i64 {
        let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        value["position"].as_i64().expect("a position")
    };
    let last = position(lines[lines.len() - 1]);
    assert!(
        stderr(&printed).contains(&format!(
            "exported {} events, last position {last}",
            lines.len()
        )),
        "{}",
        stderr(&printed)
    );

    let export_path = source.join("events.jsonl");
    let keys_path = source.join("keys.jsonl");
    let export_arg = export_path.to_string_lossy().into_owned();
    let keys_arg = keys_path.to_string_lossy().into_owned();
    let written = ok(
        &source,
        &[
            "events",
            "export",
            "--output",
            &export_arg,
            "--keys",
            &keys_arg,
        ],
    );
    assert!(
        stderr(&written).contains("data keys"),
        "{}",
        stderr(&written)
    );
    assert_eq!(std::fs::read(&export_path).expect("the export"), file);

    let cut = position(lines[1]);
    let after = ok(&source, &["events", "export", "--after", &cut.to_string()]);
    assert_eq!(stdout(&after), lines[2..].join("\n") + "\n");

    // Another data directory, with the source's master key: the data keys open there.
    let (_target_guard, target) = data_dir();
    std::fs::create_dir_all(&target).expect("the target data directory");
    std::fs::copy(source.join("master.key"), target.join("master.key"))
        .expect("copying the master key");
    let imported = berth(
        &target,
        &["events", "import", "--keys", &keys_arg],
        Some(&file),
    );
    assert!(imported.status.success(), "{}", stderr(&imported));
    assert!(
        stdout(&imported).contains(&format!(
            "imported {} events, last position {last}",
            lines.len()
        )),
        "{}",
        stdout(&imported)
    );
    let verified = ok(&target, &["verify"]);
    assert!(
        stdout(&verified).contains(&format!("verified {} events", lines.len())),
        "{}",
        stdout(&verified)
    );
    assert_eq!(ok(&target, &["events", "export"]).stdout, file);
    assert_eq!(
        stdout(&ok(&target, &["users", "list"])),
        stdout(&ok(&source, &["users", "list"]))
    );

    let again = berth(&target, &["events", "import", "--input", &export_arg], None);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));

    ok(&target, &["users", "create", "carl", "--role", "viewer"]);
    let verified = ok(&target, &["verify"]);
    assert!(
        stdout(&verified).contains(&format!("verified {} events", lines.len() + 1)),
        "{}",
        stdout(&verified)
    );

    // An altered line: refused, naming it; nothing written.
    let (_altered_guard, altered) = data_dir();
    let tampered = String::from_utf8_lossy(&file).replacen("ann", "anx", 1);
    let refused = berth(&altered, &["events", "import"], Some(tampered.as_bytes()));
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("does not match its hash"),
        "{}",
        stderr(&refused)
    );
    assert!(ok(&altered, &["events", "export"]).stdout.is_empty());
}
