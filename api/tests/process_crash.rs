//! `kill -9` of `berth serve` while it runs process servers: the attack found every
//! child alive afterwards (reparented to PID 1), `on_failure` servers running twice after
//! the restart, `never` servers recorded gone while still running, and the orphans still
//! there after a clean stop of the second Berth. Process groups are counted at each step.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_servers_die_with_berth_and_run_once_after_a_restart() {
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

    berth.kill();
    let after_kill = groups_when(&dir, Duration::from_secs(5), BTreeMap::is_empty);

    let berth = Serve::start(&dir, &["--runtime", "process"]);
    let wanted = [
        "running", "running", "running", "failed", "failed", "failed",
    ];
    let restarted = until_states(&berth, &ids, &wanted).await;
    // Give a duplicate every chance to appear before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_restart = process_groups(&dir);
    let never = berth.get_json(&format!("/api/v1/servers/{}", ids[3])).await;

    let status = berth.stop();
    let after_stop = groups_when(&dir, Duration::from_secs(5), BTreeMap::is_empty);

    assert_eq!(started, all_running, "the servers started");
    assert_eq!(before.len(), 6, "one process group per server: {before:?}");
    assert!(before.values().all(|(_, n)| *n == 1), "{before:?}");
    assert!(
        after_kill.is_empty(),
        "processes outlived a kill -9 of Berth: {after_kill:?}"
    );
    assert_eq!(restarted, wanted, "after the restart");
    let serving: BTreeSet<&str> = after_restart.values().map(|(s, _)| s.as_str()).collect();
    let expected: BTreeSet<&str> = ids[..3].iter().map(String::as_str).collect();
    assert_eq!(
        serving, expected,
        "exactly the running servers have processes: {after_restart:?}"
    );
    assert_eq!(after_restart.len(), 3, "one group each: {after_restart:?}");
    assert!(
        after_restart.values().all(|(_, n)| *n == 1),
        "{after_restart:?}"
    );
    assert!(
        before.keys().all(|pgid| !after_restart.contains_key(pgid)),
        "a process of the first Berth survived: {before:?} / {after_restart:?}"
    );
    assert!(
        never["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("gone")),
        "{never}"
    );
    assert!(status.success(), "a clean stop: {status}");
    assert!(
        after_stop.is_empty(),
        "processes outlived a clean stop of Berth: {after_stop:?}"
    );
}
