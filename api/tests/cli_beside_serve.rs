//! Every `berth` command runs while `berth serve` holds the embedded cluster: the command
//! joins the running cluster instead of failing, never stops it, and what it changes is
//! what the running Berth serves. Only the master-key rotation, which must not run
//! beside a live Berth, is refused. With Berth stopped, commands start their own cluster.

#[allow(dead_code)]
mod cli_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use cli_support::{data_dir, ok, refused, Serve};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_runs_beside_a_live_berth_on_the_embedded_cluster() {
    let (guard, dir) = data_dir("berth-cli-beside-");
    let serve = Serve::start(&dir, &["--runtime", "process"]);
    let entry = serve
        .post(
            "/api/v1/catalog",
            json!({
                "name": "beside",
                "description": "a server to replay",
                "transport": "stdio",
                "runtime": { "type": "process", "command": "true" },
                "config_schema": [],
                "resources": {}
            }),
        )
        .await;
    let server = serve
        .post(
            "/api/v1/servers",
            json!({ "catalog_id": entry["id"], "name": "beside-1", "config": {} }),
        )
        .await;
    let server_id = server["id"].as_str().expect("an id").to_owned();

    // Identity: a user and key made by the CLI work at once against the running API.
    ok(&dir, &["users", "create", "ada", "--role", "operator"]);
    assert!(ok(&dir, &["users", "list"]).contains("ada"));
    let key = ok(&dir, &["keys", "create", "--user", "ada"]);
    let me: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/me", serve.base_url()))
        .bearer_auth(key.trim())
        .send()
        .await
        .expect("berth answers")
        .json()
        .await
        .expect("a JSON answer");
    assert_eq!(me["name"], "ada", "{me}");
    assert!(ok(&dir, &["keys", "list", "--user", "ada"]).contains("cli"));

    // The log, the audit trail and the past, read beside the writer.
    ok(&dir, &["migrate"]);
    ok(&dir, &["verify"]);
    assert!(ok(&dir, &["checkpoint"]).contains("signature"));
    assert!(ok(&dir, &["audit", "list"]).contains("user.created"));
    assert!(ok(&dir, &["audit", "export"]).contains("\"server.created\""));
    assert!(ok(&dir, &["events", "export"]).contains("ServerCreated"));
    assert!(ok(&dir, &["replay", "server", &server_id]).contains("beside-1"));
    assert!(ok(&dir, &["projections", "status", "--interval", "0"]).contains("catalog"));

    // A blue-green rebuild while a reader polls: the reader never sees an error.
    let serve = Arc::new(serve);
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = tokio::spawn({
        let (serve, done, reads) = (serve.clone(), done.clone(), reads.clone());
        async move {
            while !done.load(Ordering::SeqCst) {
                let catalog = serve.get_json("/api/v1/catalog").await;
                let items = catalog["items"].as_array().expect("catalog items");
                assert!(items.iter().any(|e| e["name"] == "beside"), "{catalog}");
                reads.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let rebuild_dir = dir.clone();
    let rebuilt = tokio::task::spawn_blocking(move || {
        ok(&rebuild_dir, &["projections", "rebuild", "catalog"])
    })
    .await
    .expect("the rebuild ran");
    done.store(true, Ordering::SeqCst);
    reader.await.expect("the reader saw no error");
    assert!(rebuilt.contains("catalog"), "{rebuilt}");
    assert!(reads.load(Ordering::SeqCst) > 0);

    // The rotation of the master key is refused beside a live Berth, and says why.
    let refusal = refused(&dir, &["keys", "rotate-master"]);
    assert!(
        refusal.contains("in use by another Berth process"),
        "{refusal}"
    );
    assert!(!dir.join("master.key.next").exists());

    // The commands above never stopped the cluster under the running Berth.
    let health = serve.get("/healthz").await;
    assert!(!health.is_empty());
    let serve = Arc::try_unwrap(serve).unwrap_or_else(|_| panic!("the reader still holds Berth"));
    assert!(serve.stop().success());

    // With Berth stopped, a command starts (and stops) its own cluster again.
    assert!(ok(&dir, &["users", "list"]).contains("ada"));

    // Two commands at once with no Berth running: the second waits for the first, which
    // does not share its cluster (it stops it when it ends), and both succeed. The second
    // outlasts the first: had it joined the first's cluster, it would lose it midway.
    let first_dir = dir.clone();
    let first = std::thread::spawn(move || {
        cli_support::berth(
            &first_dir,
            &["projections", "status", "--interval", "2"],
            None,
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(ok(&dir, &["projections", "status", "--interval", "3"]).contains("catalog"));
    let first = first.join().expect("the first command ran");
    assert!(first.status.success(), "{}", cli_support::stderr(&first));

    // A Berth killed with SIGKILL leaves its lock free, its announcement behind and its
    // cluster running (in a process group of its own): the next command takes the
    // cluster over (restarting it) rather than joining it.
    let serve = Serve::start(&dir, &["--runtime", "process"]);
    serve.kill();
    assert!(ok(&dir, &["users", "list"]).contains("ada"));
    drop(guard);
}
