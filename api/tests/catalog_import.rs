//! `berth catalog import`, the built binary against a running `berth serve`: a Claude
//! Desktop configuration with two commands and one URL becomes two process entries and
//! a remote one whose servers run, with no credential of the file in Berth, what cannot
//! be mapped is reported, and a caller who may not register process entries is told so.

#[allow(dead_code)]
mod cli_support;

use std::time::{Duration, Instant};

use berth_tests::docker::fixture_binary;
use berth_tests::http_fixture::HttpFixture;
use cli_support::{berth, data_dir, stdout, Serve};
use serde_json::{json, Value};

const TOKEN: &str = "tracker-token-in-the-file";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_desktop_configuration_becomes_entries_whose_servers_run() {
    let (_dir, data) = data_dir("berth-import-");
    let tracker = HttpFixture::start(Some(TOKEN)).await;
    let settings = data.with_extension("toml");
    std::fs::write(
        &settings,
        "runtime = \"process\"\nupstream_allowed_networks = [\"127.0.0.1/32\"]\n",
    )
    .expect("writing the settings");
    let serve = Serve::start(&data, &["--config", settings.to_str().unwrap_or_default()]);

    let fixture = fixture_binary().to_string_lossy().into_owned();
    let config = json!({"mcpServers": {
        "files": {"command": fixture, "args": []},
        "notes": {"command": fixture, "env": {"NOTES_TOKEN": "notes-secret-in-the-file", "NOTES_DIR": "/tmp"}},
        "tracker": {"url": tracker.url(), "headers": {"Authorization": format!("Bearer {TOKEN}")}},
        "broken": {"args": ["no command"]}
    }});
    let file = data.with_extension("claude_desktop_config.json");
    std::fs::write(&file, config.to_string()).expect("writing the configuration");
    let file = file.to_str().unwrap_or_default().to_owned();

    // A dry run registers nothing.
    let dry = berth(&data, &["catalog", "import", &file, "--dry-run"], None);
    assert!(dry.status.success(), "{}", cli_support::stderr(&dry));
    let catalog = serve.get_json("/api/v1/catalog?kind=custom").await;
    assert_eq!(catalog["total"], 0, "{catalog}");

    let imported = berth(&data, &["catalog", "import", &file], None);
    let said = stdout(&imported);
    assert!(
        imported.status.success(),
        "{said}{}",
        cli_support::stderr(&imported)
    );
    assert_eq!(said.matches("registered").count(), 3, "{said}");
    assert!(said.contains("not imported: has neither"), "{said}");
    assert!(said.contains("NOTES_TOKEN"), "{said}");
    for secret in [TOKEN, "notes-secret-in-the-file"] {
        assert!(!said.contains(secret), "{said}");
    }
    // The catalog read model follows the log a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    let catalog = loop {
        let catalog = serve.get_json("/api/v1/catalog?kind=custom").await;
        if catalog["total"] == 3 || Instant::now() > deadline {
            break catalog;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(catalog["total"], 3, "{catalog}");
    assert!(!catalog.to_string().contains(TOKEN));
    let entry = |name: &str| -> Value {
        catalog["items"]
            .as_array()
            .and_then(|items| items.iter().find(|e| e["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no entry {name}: {catalog}"))
    };
    assert_eq!(entry("notes")["runtime"]["type"], "process");
    assert_eq!(entry("tracker")["runtime"]["type"], "remote");

    // Servers of the process entry and of the remote one (with its token) run.
    for (name, body) in [
        (
            "files",
            json!({"name": "files", "catalog_id": entry("files")["id"]}),
        ),
        (
            "tracker",
            json!({"name": "tracker", "catalog_id": entry("tracker")["id"],
                   "secrets": {"TRACKER_TOKEN": TOKEN}}),
        ),
    ] {
        serve.running(body).await;
        eprintln!("{name} runs");
    }

    // An operator may register remote entries but not process ones: told so, per server,
    // and the command fails.
    let ann = serve
        .post("/api/v1/users", json!({"name": "ann", "role": "operator"}))
        .await;
    let key = serve
        .post(
            &format!(
                "/api/v1/users/{}/keys",
                ann["id"].as_str().unwrap_or_default()
            ),
            json!({"name": "import"}),
        )
        .await;
    let key_file = data.with_extension("ann-key");
    std::fs::write(&key_file, key["key"].as_str().unwrap_or_default()).expect("writing the key");
    let refused = berth(
        &data,
        &[
            "catalog",
            "import",
            &file,
            "--token-file",
            key_file.to_str().unwrap_or_default(),
        ],
        None,
    );
    let said = stdout(&refused);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("refused (403)"), "{said}");
    serve.stop();
}
