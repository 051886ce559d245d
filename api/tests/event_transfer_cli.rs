//! `berth events export` and `berth events import` as an operator runs them, on the
//! embedded cluster: the export on standard output and in a file are the same bytes,
//! `--after` cuts it exactly, an import into another data directory (with the data keys
//! and the master key) verifies, exports the same file again, lists the same users and
//! takes new commands; importing twice or an altered file is refused and writes nothing.

#[allow(dead_code)]
mod cli_support;

use cli_support::{berth, data_dir, ok, refused, stderr, stdout, succeeded};

#[test]
fn the_event_log_moves_to_another_data_directory() {
    let (_source_guard, source) = data_dir("berth-transfer-cli-");
    ok(&source, &["users", "create", "ann", "--role", "operator"]);
    ok(
        &source,
        &["keys", "create", "--user", "ann", "--name", "ci"],
    );
    ok(&source, &["users", "create", "bob", "--role", "viewer"]);
    ok(&source, &["users", "disable", "bob"]);

    let printed = succeeded(&source, &["events", "export"]);
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
    let written = succeeded(
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
    // The log and the wrapped data keys are for their owner's eyes only.
    for path in [&export_path, &keys_path] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }

    let cut = position(lines[1]);
    let after = ok(&source, &["events", "export", "--after", &cut.to_string()]);
    assert_eq!(after, lines[2..].join("\n") + "\n");

    // Another data directory, with the source's master key: the data keys open there.
    let (_target_guard, target) = data_dir("berth-transfer-cli-");
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
        verified.contains(&format!("verified {} events", lines.len())),
        "{verified}"
    );
    assert_eq!(succeeded(&target, &["events", "export"]).stdout, file);
    assert_eq!(
        ok(&target, &["users", "list"]),
        ok(&source, &["users", "list"])
    );

    let said = refused(&target, &["events", "import", "--input", &export_arg]);
    assert!(said.contains("not empty"), "{said}");

    ok(&target, &["users", "create", "carl", "--role", "viewer"]);
    let verified = ok(&target, &["verify"]);
    assert!(
        verified.contains(&format!("verified {} events", lines.len() + 1)),
        "{verified}"
    );

    // An altered line: refused, naming it; nothing written.
    let (_altered_guard, altered) = data_dir("berth-transfer-cli-");
    let tampered = String::from_utf8_lossy(&file).replacen("ann", "anx", 1);
    let refused = berth(&altered, &["events", "import"], Some(tampered.as_bytes()));
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("does not match its hash"),
        "{}",
        stderr(&refused)
    );
    assert!(ok(&altered, &["events", "export"]).is_empty());
}
