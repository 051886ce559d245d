//! `GET /gateway`: how MCP clients reach the caller's tools: the client configuration
//! `berth clients config` writes (with a copy button), the caller's profiles, and the
//! recent tool calls of one of their servers with latency and outcome.

use actix_web::{web, HttpRequest};
use berth_domain::ServerId;
use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use crate::cli::clients::{http_snippet, ClientKind};
use crate::cli::mcp::gateway_url;
use crate::console::answer::{head, items, json_of, text};
use crate::console::caller::{ConsoleCaller, ConsoleError};
use crate::console::layout::{page, Section};
use crate::console::query::ConsoleQuery;
use crate::http::extract::ApiQuery;
use crate::http::routes::profiles;
use crate::http::routes::server_calls::{self, CallsQuery};
use crate::http::routes::servers::{self, ServerListQuery};
use crate::http::state::AppState;

/// Query of `GET /gateway`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayQuery {
    /// Whose calls to show (default: the first of the caller's servers).
    server: Option<Uuid>,
}

const CLIENTS: [(ClientKind, &str, &str); 3] = [
    (ClientKind::ClaudeCode, "Claude Code", ".mcp.json"),
    (ClientKind::Cursor, "Cursor", ".cursor/mcp.json"),
    (ClientKind::Vscode, "VS Code", ".vscode/mcp.json"),
];

/// `GET /gateway`.
pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ConsoleCaller,
    ConsoleQuery(query): ConsoleQuery<GatewayQuery>,
) -> Result<Markup, ConsoleError> {
    let at = head(&state).await?;
    let info = req.connection_info().clone();
    let url = gateway_url(&format!("{}://{}", info.scheme(), info.host()), None);
    let profiles = json_of(profiles::list(state.clone(), caller.principal.clone()).await).await?;
    let servers = json_of(
        servers::list(
            state.clone(),
            caller.principal.clone(),
            ApiQuery(ServerListQuery {
                state: None,
                catalog_id: None,
                q: None,
                page: None,
                page_size: Some(500),
                min_position: Some(at),
            }),
        )
        .await,
    )
    .await?;
    let chosen = query
        .server
        .map(|id| id.to_string())
        .or_else(|| items(&servers).first().map(|s| text(s, "id").to_owned()));
    let calls = match chosen.as_deref().and_then(|id| id.parse::<Uuid>().ok()) {
        Some(id) => Some(
            json_of(
                server_calls::calls(
                    state.clone(),
                    caller.principal.clone(),
                    web::Path::from(ServerId::from(id)),
                    ApiQuery(CallsQuery {
                        tool: None,
                        caller: None,
                        outcome: None,
                        from: None,
                        to: None,
                        page: None,
                        page_size: Some(50),
                        min_position: Some(at),
                    }),
                )
                .await,
            )
            .await?,
        ),
        None => None,
    };
    let content = html! {
        section aria-labelledby="clients-h" {
            h2 #clients-h { "Connect a client" }
            p { "MCP clients reach your tools at " code { (url) } ", with an API key of yours "
                "(make one on " a href={"/users/" (caller.principal.user_id)} { "your keys page" } ")." }
            @for (i, (client, name, file)) in CLIENTS.iter().enumerate() {
                @let id = format!("snippet-{i}");
                h3 { (name) " (" code { (file) } ")" }
                pre #(id) { (serde_json::to_string_pretty(&http_snippet(*client, &url, "<your API key>")).unwrap_or_default()) }
                button type="button" data-copy={"#" (id)} { "Copy" }
            }
            p.muted { "Claude Desktop starts " code { "berth mcp connect" } ": run " code { "berth clients config claude-desktop" } "." }
        }
        section aria-labelledby="profiles-h" {
            h2 #profiles-h { "Profiles" }
            @if items(&profiles).is_empty() { p { "No profiles: clients see every tool you may use." } }
            ul { @for profile in items(&profiles) {
                li { code { (gateway_url(&format!("{}://{}", info.scheme(), info.host()), Some(text(profile, "name")))) }
                    " — " (profile["servers"].as_array().map_or(0, Vec::len)) " servers" }
            } }
        }
        section aria-labelledby="calls-h" {
            h2 #calls-h { "Recent tool calls" }
            form.filters method="get" action="/gateway" {
                div {
                    label for="server" { "Server" }
                    select #server name="server" {
                        @for server in items(&servers) {
                            option value=(text(server, "id")) selected[chosen.as_deref() == Some(text(server, "id"))] { (text(server, "name")) }
                        }
                    }
                }
                button type="submit" { "Show" }
            }
            @if let Some(calls) = &calls {
                table {
                    thead { tr {
                        th scope="col" { "When" } th scope="col" { "Tool" } th scope="col" { "Caller" }
                        th scope="col" { "Outcome" } th scope="col" { "Latency" }
                    } }
                    tbody { @for call in items(calls) {
                        tr {
                            td { a href={"/events/" (call["position"])} { (text(call, "at")) } }
                            td { code { (text(call, "tool")) } }
                            td { (text(call, "caller")) }
                            td { span class={"badge outcome-" (text(call, "outcome"))} { (text(call, "outcome")) } }
                            td { (format!("{:.1} ms", call["duration_us"].as_f64().unwrap_or_default() / 1000.0)) }
                        }
                    } }
                }
            } @else {
                p { "No servers yet." }
            }
        }
    };
    Ok(page("Gateway", &caller, Section::Gateway, None, content))
}
