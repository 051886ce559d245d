//! `berth audit list|export` and `berth replay server` on the embedded cluster: what
//! they print is what the API answered before Berth stopped (the same export files byte
//! for byte, the same list entries, the same past server), and bad flags are refused
//! with a message naming them.

#[allow(dead_code)]
mod cli_support;

use cli_support::{data_dir, ok, refused, Serve};
use serde_json::{json, Value};

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// What the API answered before Berth stopped.
struct Answers {
    server_id: String,
    patched_at: i64,
    server_then: Value,
    csv: Vec<u8>,
    jsonl: Vec<u8>,
    server_audit: Value,
}

async fn drive_the_api(serve: &Serve) -> Answers {
    use reqwest::Method;
    let entry = serve
        .post(
            "/api/v1/catalog",
            json!({
                "name": "audited",
                "description": "for the audit CLI",
                "transport": "stdio",
                "runtime": { "type": "process", "command": "true" },
                "config_schema": [
                    { "key": "TOKEN", "description": "", "required": true, "secret": true },
                    { "key": "MODE", "description": "", "required": false, "secret": false }
                ],
                "resources": {}
            }),
        )
        .await;
    let server = serve
        .post(
            "/api/v1/servers",
            json!({
                "catalog_id": entry["id"],
                "name": "audited-1",
                "config": { "MODE": "a, \"quoted\" value" },
                "secrets": { "TOKEN": "audit-cli-secret" }
            }),
        )
        .await;
    let server_id = server["id"].as_str().expect("an id").to_string();
    let path = format!("/api/v1/servers/{server_id}");
    let patched = serve
        .json(
            Method::PATCH,
            &path,
            json!({ "config": { "MODE": "=formula" } }),
        )
        .await;
    let patched_at = patched["position"].as_i64().expect("a position");
    let mut last = patched_at;
    for action in ["disable", "enable", "disable"] {
        let answer = serve.post(&format!("{path}/{action}"), json!({})).await;
        last = answer["position"].as_i64().expect("a position");
    }
    let wait = format!("min_position={last}");
    let server_then = serve.get_json(&format!("{path}?at={patched_at}")).await;
    Answers {
        patched_at,
        server_then,
        csv: serve
            .get(&format!("/api/v1/audit/export?format=csv&{wait}"))
            .await,
        jsonl: serve
            .get(&format!("/api/v1/audit/export?format=jsonl&{wait}"))
            .await,
        server_audit: serve
            .get_json(&format!("/api/v1/audit?server_id={server_id}&{wait}"))
            .await,
        server_id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_and_replay_commands_print_what_the_api_answered() {
    let (guard, dir) = data_dir("berth-audit-cli-");
    let serve = Serve::start(&dir, &["--runtime", "process"]);
    let api = drive_the_api(&serve).await;
    serve.stop();
    let id = api.server_id.as_str();

    // Exports: the same files, byte for byte, to stdout or to a file.
    let csv = ok(&dir, &["audit", "export", "--format", "csv"]);
    assert_eq!(csv.as_bytes(), api.csv.as_slice());
    assert!(csv.starts_with("position,at,actor,action,"), "{csv}");
    let file = guard.path().join("audit.jsonl");
    let file_arg = file.display().to_string();
    ok(
        &dir,
        &[
            "audit", "export", "--format", "jsonl", "--output", &file_arg,
        ],
    );
    let written = std::fs::read(&file).expect("the export file");
    assert_eq!(written, api.jsonl);
    assert!(!guard.path().join("audit.jsonl.partial").exists());
    let lines = json_lines(&String::from_utf8_lossy(&written));
    assert!(lines
        .iter()
        .all(|l| l["event"] == format!("/api/v1/events/{}", l["position"].as_i64().unwrap_or(-1))));
    // Filters narrow exports as they narrow the API's.
    let disables = ok(
        &dir,
        &[
            "audit",
            "export",
            "--action",
            "server.disabled",
            "--server",
            id,
        ],
    );
    let disables = json_lines(&disables);
    assert_eq!(disables.len(), 2);
    assert!(disables.iter().all(|l| l["action"] == "server.disabled"));

    // Lists: the API's page, newest first.
    let listed = json_lines(&ok(&dir, &["audit", "list", "--server", id, "--json"]));
    assert_eq!(
        Value::Array(listed.clone()),
        api.server_audit["items"],
        "berth audit list --json lists what GET /audit lists"
    );
    let limited = json_lines(&ok(
        &dir,
        &["audit", "list", "--server", id, "--limit", "2", "--json"],
    ));
    assert_eq!(limited.as_slice(), &listed[..2]);
    let table = ok(
        &dir,
        &[
            "audit",
            "list",
            "--actor",
            "user:admin",
            "--action",
            "server.config_updated",
            "--from",
            "2000-01-01T00:00:00Z",
            "--to",
            "2999-01-01T00:00:00+01:00",
        ],
    );
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("POSITION"), "{table}");
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows[1].contains(&format!("server/{id}")) && rows[1].contains("user:admin"));
    // Columns line up whatever their cells: every heading starts where its column's
    // cells start, long catalog targets and short user ones alike.
    let all = ok(&dir, &["audit", "list"]);
    let heading = all.lines().next().expect("a heading");
    let summary_at = heading.find("SUMMARY").expect("a SUMMARY column");
    let target_at = heading.find("TARGET").expect("a TARGET column");
    for row in all.lines().skip(1) {
        for at in [target_at, summary_at] {
            assert_eq!(&row[at - 2..at], "  ", "misaligned: {row:?}\n{all}");
            assert_ne!(&row[at..=at], " ", "misaligned: {row:?}\n{all}");
        }
    }
    assert!(all.contains("catalog_entry/"), "{all}");
    let none = ok(&dir, &["audit", "list", "--from", "2999-01-01T00:00:00Z"]);
    assert_eq!(none.lines().count(), 1, "{none}");

    // Bad flags are refused, naming the flag, before anything is read.
    for (args, named) in [
        (vec!["audit", "list", "--from", "yesterday"], "--from"),
        (
            vec!["audit", "export", "--to", "2026-13-45T00:00:00Z"],
            "--to",
        ),
        (vec!["audit", "list", "--server", "not-a-uuid"], "--server"),
        (vec!["audit", "list", "--limit", "0"], "--limit"),
        (vec!["audit", "export", "--format", "xml"], "--format"),
        (
            vec![
                "audit",
                "list",
                "--from",
                "2026-02-01T00:00:00Z",
                "--to",
                "2026-01-01T00:00:00Z",
            ],
            "--to",
        ),
        (vec!["replay", "server", id, "--at", "garbage"], "--at"),
    ] {
        let said = refused(&dir, &args);
        assert!(said.contains(named), "berth {args:?} said: {said}");
    }
    let said = refused(&dir, &["audit", "list", "--from", "yesterday"]);
    assert!(said.contains("RFC 3339"), "{said}");

    // Replay: the same past server as `GET /servers/{id}?at=`.
    let at = api.patched_at.to_string();
    let replayed: Value =
        serde_json::from_str(&ok(&dir, &["replay", "server", id, "--at", &at])).expect("JSON");
    assert_eq!(replayed, api.server_then);
    assert_eq!(replayed["config"]["MODE"], "=formula");
    assert_eq!(replayed["secrets"]["TOKEN"], "********");
    let now: Value = serde_json::from_str(&ok(&dir, &["replay", "server", id])).expect("JSON");
    assert_eq!(now["enabled"], false);
    let said = refused(&dir, &["replay", "server", id, "--at", "0"]);
    assert!(said.contains("no server had the id"), "{said}");
}
