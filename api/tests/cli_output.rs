//! What the `berth` command prints for people: no terminal colour codes when its output
//! goes to a file or a pipe (logs collected by a service manager used to be full of them).

#[allow(dead_code)]
mod cli_support;

use std::process::Stdio;

use cli_support::{berth_command, data_dir};

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let (_guard, dir) = data_dir("berth-cli-output-");
    let out = berth_command(&dir)
        .env_remove("NO_COLOR")
        .args(["users", "list"])
        .stdin(Stdio::null())
        .output()
        .expect("running berth");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.is_empty(), "berth logged nothing to look at");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in piped output: {stderr:?}"
    );
}
