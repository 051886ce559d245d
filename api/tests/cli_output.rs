//! What the `berth` command prints for people: no terminal colour codes when its output
//! goes to a file or a pipe (logs collected by a service manager used to be full of them),
//! and a one-shot command's answer without the embedded cluster's start and stop around it.

#[allow(dead_code)]
mod cli_support;

use std::process::Stdio;

use cli_support::{berth_command, data_dir};

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let (_guard, dir) = data_dir("berth-cli-output-");
    let out = berth_command(&dir)
        .env_remove("NO_COLOR")
        .args(["-v", "users", "list"])
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

#[test]
fn a_one_shot_command_logs_only_when_asked() {
    let (_guard, dir) = data_dir("berth-cli-quiet-");
    let run = |args: &[&str]| {
        let out = berth_command(&dir)
            .env_remove("RUST_LOG")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running berth");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    };
    let (listed, quiet) = run(&["users", "list"]);
    assert!(listed.starts_with("ID"), "no table printed: {listed}");
    assert_eq!(quiet, "", "a plain command logged");
    let (_, verbose) = run(&["users", "list", "--verbose"]);
    assert!(
        verbose.contains("embedded PostgreSQL"),
        "-v did not log the cluster's start: {verbose}"
    );
}
