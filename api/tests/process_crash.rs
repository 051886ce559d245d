//! `kill -9` or SIGTERM of `berth serve` while it runs process servers, then a new Berth.
//! The attack found every child alive after a `kill -9` (reparented to PID 1),
//! `on_failure` servers running twice after the restart, `never` servers recorded gone
//! while still running, and the orphans still there after a clean stop of the second
//! Berth. A restart then recorded a failure for every process server, using up an
//! `on_failure` retry and leaving `never` servers failed. Now every process ends with its
//! Berth and every server that was running runs again, once, with no failure recorded.
//! Process groups are counted at each step.

#[allow(dead_code)]
mod cli_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_tests::docker::fixture_binary;
use cli_support::{data_dir, Serve};
use serde_json::{json, Value};

/// Every process whose working directory is a server's home under `data_dir`, by
/// process group: the server id each group serves, and how many processes it has.
fn process_groups(data_dir: &Path) -> BTreeMap<i32, (String, usize)> {
    let homes = data_dir.join("process-logs/home");
    let mut groups: BTreeMap<i32, (String, usize)> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        let Ok(server) = cwd.strip_prefix(&homes) else {
            continue;
        };
        let Some(stat) = berth_infrastructure::runtime::process::orphans::stat(pid) else {
            continue;
        };
        if stat.state == 'Z' {
            continue;
        }
        let group = groups
            .entry(stat.pgid)
            .or_insert_with(|| (server.display().to_string(), 0));
        group.1 += 1;
    }
    groups
}

/// Waits up to `within` for the process groups to satisfy `done`; returns the last seen.
fn groups_when(
    data_dir: &Path,
    within: Duration,
    done: impl Fn(&BTreeMap<i32, (String, usize)>) -> bool,
) -> BTreeMap<i32, (String, usize)> {
    let deadline = Instant::now() + within;
    loop {
        let groups = process_groups(data_dir);
        if done(&groups) || Instant::now() >= deadline {
            return groups;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn states(berth: &Serve, ids: &[String]) -> Vec<String> {
    let mut states = Vec::new();
    for id in ids {
        let server = berth.get_json(&format!("/api/v1/servers/{id}")).await;
        states.push(server["state"].as_str().unwrap_or_default().to_string());
    }
    states
}

async fn until_states(berth: &Serve, ids: &[String], wanted: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = states(berth, ids).await;
        if now.iter().zip(wanted).all(|(a, b)| a == b) || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How the first Berth ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ending {
    Killed,
    Stopped,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_servers_die_with_a_killed_berth_and_run_once_after_a_restart() {
    servers_end_with_berth_and_run_again(Ending::Killed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_servers_stopped_with_berth_run_again_after_a_restart_without_a_failure() {
    servers_end_with_berth_and_run_again(Ending::Stopped).await;
}

async fn servers_end_with_berth_and_run_again(ending: Ending) {
    let (_guard, dir) = data_dir("berth-crash-");
    let berth = Serve::start(&dir, &["--runtime", "process"]);
    let entry = berth
        .post(
            "/api/v1/catalog",
            json!({
                "name": "crash-fixture",
                // Over HTTP: a stdio server would exit by itself when Berth's end of its
                // standard input closes, hiding whether Berth ends it.
                "transport": "http",
                "runtime": {"type": "process", "command": fixture_binary().display().to_string()}
            }),
        )
        .await;
    let mut ids = Vec::new();
    for (n, policy) in [
        "on_failure",
        "on_failure",
        "on_failure",
        "never",
        "never",
        "never",
    ]
    .into_iter()
    .enumerate()
    {
        let restart_policy: Value = if policy == "never" {
            json!({"type": "never"})
        } else {
            json!({"type": "on_failure", "max_retries": 3})
        };
        let server = berth
            .post(
                "/api/v1/servers",
                json!({"catalog_id": entry["id"], "name": format!("crash-{n}"), "restart_policy": restart_policy}),
            )
            .await;
        ids.push(server["id"].as_str().unwrap_or_default().to_string());
    }
    berth
        .post(
            "/api/v1/bulk",
            json!({"operation": "start", "server_ids": ids}),
        )
        .await;
    let all_running = ["running"; 6];
    let started = until_states(&berth, &ids, &all_running).await;
    let before = process_groups(&dir);
    let newest = berth.get_json("/api/v1/audit?page_size=1").await;
    let audited_before = newest["items"][0]["position"].as_i64().unwrap_or_default();

    match ending {
        Ending::Killed => berth.kill(),
        Ending::Stopped => assert!(berth.stop().success(), "a clean stop"),
    }
    let after_kill = groups_when(&dir, Duration::from_secs(5), BTreeMap::is_empty);

    let berth = Serve::start(&dir, &["--runtime", "process"]);
    let restarted = until_states(&berth, &ids, &all_running).await;
    // Give a duplicate every chance to appear before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_restart = process_groups(&dir);
    let mut servers = Vec::new();
    for id in &ids {
        servers.push(berth.get_json(&format!("/api/v1/servers/{id}")).await);
    }
    let audit = berth
        .get_json("/api/v1/audit?actor=system:process-manager&page_size=500")
        .await;

    let status = berth.stop();
    let after_stop = groups_when(&dir, Duration::from_secs(5), BTreeMap::is_empty);

    assert_eq!(started, all_running, "the servers started");
    assert_eq!(before.len(), 6, "one process group per server: {before:?}");
    assert!(before.values().all(|(_, n)| *n == 1), "{before:?}");
    assert!(
        after_kill.is_empty(),
        "processes outlived Berth ({ending:?}): {after_kill:?}"
    );
    assert_eq!(restarted, all_running, "after the restart ({ending:?})");
    let serving: BTreeSet<&str> = after_restart.values().map(|(s, _)| s.as_str()).collect();
    let expected: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(
        serving, expected,
        "every server has its process again: {after_restart:?}"
    );
    assert_eq!(after_restart.len(), 6, "one group each: {after_restart:?}");
    assert!(
        after_restart.values().all(|(_, n)| *n == 1),
        "{after_restart:?}"
    );
    assert!(
        before.keys().all(|pgid| !after_restart.contains_key(pgid)),
        "a process of the first Berth survived: {before:?} / {after_restart:?}"
    );
    for server in &servers {
        assert_eq!(server["restart_attempts"], 0, "no retry used: {server}");
        assert!(server["last_error"].is_null(), "no failure: {server}");
    }
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|a| a["position"].as_i64() > Some(audited_before))
                .filter_map(|a| a["action"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let relaunched = actions
        .iter()
        .filter(|a| **a == "server.relaunched")
        .count();
    assert_eq!(relaunched, 6, "{actions:?}");
    assert!(
        !actions
            .iter()
            .any(|a| *a == "server.failed" || *a == "server.exited"),
        "a failure was recorded ({ending:?}): {actions:?}"
    );
    assert!(status.success(), "a clean stop: {status}");
    assert!(
        after_stop.is_empty(),
        "processes outlived a clean stop of Berth: {after_stop:?}"
    );
}
