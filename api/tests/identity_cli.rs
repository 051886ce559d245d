//! `berth users …` and `berth keys …` against the embedded cluster: users and keys made
//! from the command line exist, keys are printed once and stored as hashes, revoking
//! works, bad input fails with a clear message, and every change is a `system:cli` event.

#[allow(dead_code)]
mod cli_support;

use cli_support::{data_dir, ok, refused};

#[test]
fn users_and_keys_are_managed_from_the_command_line() {
    let (_guard, dir) = data_dir("berth-identity-cli-");
    let created = ok(&dir, &["users", "create", "ann", "--role", "operator"]);
    assert!(created.contains("created user ann"), "{created}");

    let said = refused(&dir, &["users", "create", "ann", "--role", "viewer"]);
    assert!(said.contains("already exists"), "{said}");
    let said = refused(&dir, &["users", "create", "bob", "--role", "root"]);
    assert!(said.contains("unknown role"), "{said}");

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
    let said = refused(&dir, &["keys", "revoke", &key_id]);
    assert!(said.contains("revoked"), "{said}");

    ok(&dir, &["users", "disable", "ann"]);
    let users = ok(&dir, &["users", "list"]);
    assert!(
        users
            .lines()
            .any(|l| l.contains("ann") && l.contains("disabled")),
        "{users}"
    );
    refused(&dir, &["keys", "create", "--user", "ann"]);
    let said = refused(&dir, &["keys", "create", "--user", "nobody"]);
    assert!(said.contains("not found"), "{said}");

    // Enabled again, ann may be given keys; the only administrator cannot be disabled
    // (which once locked everyone out, with no way back).
    ok(&dir, &["users", "enable", "ann"]);
    let said = refused(&dir, &["users", "enable", "ann"]);
    assert!(said.contains("already enabled"), "{said}");
    ok(&dir, &["keys", "create", "--user", "ann"]);
    ok(&dir, &["users", "create", "root", "--role", "admin"]);
    let said = refused(&dir, &["users", "disable", "root"]);
    assert!(said.contains("last active administrator"), "{said}");
    let said = refused(&dir, &["users", "forget", "root"]);
    assert!(said.contains("last active administrator"), "{said}");
    ok(&dir, &["keys", "create", "--user", "root"]);

    // Every change above is an event on the users' hash chains, which stay intact.
    ok(&dir, &["verify"]);
}
