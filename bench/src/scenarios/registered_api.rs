//! A registered API's cost: `tools/call` of `pets__getPet` through `berth serve`'s `/mcp`
//! (the gateway, the endpoint runtime's in-process MCP server, the HTTP request to the
//! API with the server's key, the call recorded as an event) against the same HTTP
//! request sent directly to the API, in the same run, at 1 and 16 clients.
//!
//! The API is the test kit's small API on loopback (`berth_tests::pets_api`), which
//! closes each connection after its answer: both sides pay a connection per request.

use anyhow::Context;
use berth_tests::pets_api::PetsApi;
use rmcp::model::CallToolRequestParams;
use serde_json::json;

use crate::load::drive;
use crate::scenarios::gateway::{
    calls_through, close, gateway_sessions, report, running_server, Targets,
};
use crate::scenarios::http::{berth_binary, checked};
use crate::serve::{BerthServe, ServeOptions};
use crate::Bench;

const SCENARIO: &str = "registered_api";

/// Client counts measured.
const CLIENTS: [usize; 2] = [1, 16];

/// The key the API wants.
const KEY: &str = "bench-key";

/// Runs the scenario.
pub async fn run(bench: &Bench<'_>) -> anyhow::Result<()> {
    let api = PetsApi::start(KEY).await;
    let binary = berth_binary(bench)?;
    let db = bench.server.database("registered_api", false).await?;
    let options = ServeOptions {
        env: vec![
            ("BERTH_GATEWAY_CALLS_PER_SECOND".into(), "0".into()),
            ("BERTH_GATEWAY_TOOL_CALLS_PER_SECOND".into(), "0".into()),
            ("BERTH_GATEWAY_MAX_IN_FLIGHT".into(), "1024".into()),
            (
                "BERTH_UPSTREAM_ALLOWED_NETWORKS".into(),
                "[\"127.0.0.1/32\"]".into(),
            ),
        ],
        ..ServeOptions::default()
    };
    let serve = BerthServe::start(&binary, &db, &options).await?;
    let outcome = measure(bench, &serve, &api).await;
    serve.stop().await?;
    outcome
}

async fn measure(bench: &Bench<'_>, serve: &BerthServe, api: &PetsApi) -> anyhow::Result<()> {
    let entry = json!({
        "name": "pets-api",
        "transport": "stdio",
        "runtime": {
            "type": "openapi",
            "document": PetsApi::document(),
            "base_url": api.url(),
            "auth": {"type": "header", "name": "X-Key", "secret": "PETS_KEY"},
            "health_path": "/health",
            "operations": ["getPet"]
        },
        "config_schema": [{"key": "PETS_KEY", "secret": true, "required": true}]
    });
    let server = json!({"name": "pets", "secrets": {"PETS_KEY": KEY}});
    running_server(serve, &entry, server).await?;
    let url = serve.url("/mcp");
    let direct_url = format!("{}/pets/7?fields=name", api.url());
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("building the direct client")?;
    let duration = bench.scale.command_run;
    for clients in CLIENTS {
        let sessions = gateway_sessions(&url, serve.admin_token(), clients).await?;
        let (client, target) = (http.clone(), direct_url.clone());
        let mut direct_run = checked(
            drive(clients, duration, move |_, _| {
                let request = client.get(&target).header("X-Key", KEY);
                async move {
                    let answer = request.send().await?.error_for_status()?;
                    answer.bytes().await?;
                    Ok(0)
                }
            })
            .await,
        )?;
        let mut gateway_run = calls_through(&sessions, duration, get_pet).await?;
        report(
            bench,
            SCENARIO,
            &format!("getPet, {clients} clients"),
            "the same HTTP request sent directly",
            Targets::default(),
            &mut gateway_run,
            &mut direct_run,
        );
        close(sessions).await?;
    }
    Ok(())
}

fn get_pet(_: u64) -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new("pets__getPet");
    params.arguments = json!({"id": 7, "fields": "name"}).as_object().cloned();
    params
}
