//! `GET /servers/{id}`: one server: its status (live), config with secrets masked, tools
//! and their input schemas, logs as they are written, the MCP test, its history with
//! what each change changed, and a time slider that shows it as it was at any past
//! position of its history.

use actix_web::web;
use berth_domain::user::Role;
use berth_domain::ServerId;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use crate::console::answer::{head, items, json_of, text};
use crate::console::caller::{ConsoleCaller, ConsoleError};
use crate::console::fragments::{server_status_slot, server_tools_slot};
use crate::console::layout::{page, state_badge, Live, Section};
use crate::console::pages::servers::lifecycle_buttons;
use crate::console::query::ConsoleQuery;
use crate::http::extract::ApiQuery;
use crate::http::pagination::PageQuery;
use crate::http::problem::ApiError;
use crate::http::routes::servers::{self, ServerReadQuery};
use crate::http::routes::{server_history, server_runtime};
use crate::http::state::AppState;

/// The most changes the history and the slider show (the latest ones).
const HISTORY_PAGE: i64 = 500;

async fn server(
    state: &web::Data<AppState>,
    caller: &ConsoleCaller,
    id: ServerId,
    read: ServerReadQuery,
) -> Result<Value, ConsoleError> {
    let answer = servers::get(
        state.clone(),
        caller.principal.clone(),
        web::Path::from(id),
        ApiQuery(read),
    )
    .await;
    json_of(answer).await
}

async fn history_page(
    state: &web::Data<AppState>,
    caller: &ConsoleCaller,
    id: ServerId,
    page: i64,
) -> Result<Value, ConsoleError> {
    let answer = server_history::history(
        state.clone(),
        caller.principal.clone(),
        web::Path::from(id),
        ApiQuery(PageQuery {
            page: Some(page),
            page_size: Some(HISTORY_PAGE),
        }),
    )
    .await;
    json_of(answer).await
}

/// The server's latest [`HISTORY_PAGE`] changes, oldest first.
async fn history(
    state: &web::Data<AppState>,
    caller: &ConsoleCaller,
    id: ServerId,
) -> Result<Vec<Value>, ConsoleError> {
    let first = history_page(state, caller, id, 1).await?;
    let total = first["total"].as_i64().unwrap_or_default();
    if total <= HISTORY_PAGE {
        return Ok(items(&first).to_vec());
    }
    let last = (total + HISTORY_PAGE - 1) / HISTORY_PAGE;
    let mut changes = items(&history_page(state, caller, id, last - 1).await?).to_vec();
    changes.extend_from_slice(items(&history_page(state, caller, id, last).await?));
    let skip = changes.len().saturating_sub(HISTORY_PAGE as usize);
    Ok(changes.split_off(skip))
}

/// A server's config: plain values, and secrets by key only.
fn config_table(server: &Value) -> Markup {
    let config = server["config"].as_object().cloned().unwrap_or_default();
    let secrets = server["secrets"].as_object().cloned().unwrap_or_default();
    html! {
        table.config {
            thead { tr { th scope="col" { "Key" } th scope="col" { "Value" } } }
            tbody {
                @for (key, value) in &config {
                    tr { td { code { (key) } } td { (value.as_str().map_or_else(|| value.to_string(), str::to_owned)) } }
                }
                @for key in secrets.keys() {
                    tr { td { code { (key) } } td { span.muted { "******** (secret)" } } }
                }
                @if config.is_empty() && secrets.is_empty() {
                    tr { td colspan="2" { "No configuration." } }
                }
            }
        }
    }
}

fn history_table(history: &[Value]) -> Markup {
    html! {
        table.history {
            thead { tr {
                th scope="col" { "Position" } th scope="col" { "When" } th scope="col" { "Who" }
                th scope="col" { "What" } th scope="col" { "Changes" }
            } }
            tbody {
                @for entry in history {
                    tr {
                        td { a href={"/events/" (entry["position"])} { (entry["position"]) } }
                        td { (text(entry, "at")) }
                        td { (text(entry, "actor")) }
                        td { (text(entry, "action")) }
                        td { ul.changes {
                            @for change in entry["changes"].as_array().into_iter().flatten() {
                                li { code { (text(change, "field")) } ": " (change["from"]) " → " (change["to"]) }
                            }
                        } }
                    }
                }
            }
        }
    }
}

/// The server as it was: its state and config at a past position.
fn as_of(server: &Value, position: i64) -> Markup {
    html! {
        p { "At position " (position) ": " (state_badge(text(server, "state"))) }
        (config_table(server))
    }
}

/// `GET /servers/{id}`.
pub async fn show(
    state: web::Data<AppState>,
    caller: ConsoleCaller,
    id: web::Path<ServerId>,
) -> Result<Markup, ConsoleError> {
    let id = id.into_inner();
    let at = head(&state).await?;
    let server = server(
        &state,
        &caller,
        id,
        ServerReadQuery {
            min_position: Some(at),
            at: None,
        },
    )
    .await?;
    let history = history(&state, &caller, id).await?;
    let positions: Vec<String> = history.iter().map(|e| e["position"].to_string()).collect();
    let last = positions.len().saturating_sub(1);
    let content = html! {
        p { (server_status_slot(&server)) " " (lifecycle_buttons(&caller, &server))
            @if caller.principal.role >= Role::Operator {
                " "
                span data-then-go="/servers" {
                    button.danger type="button" hx-delete={"/api/v1/servers/" (id)} hx-swap="none"
                        hx-confirm={"Delete " (text(&server, "name")) "? Its container or process is stopped first."} { "Delete" }
                }
            }
        }
        p.muted { "Catalog entry " a href={"/catalog/" (text(&server, "catalog_id"))} { (text(&server, "catalog_id")) }
            ", owner " (text(&server, "owner")) ", version " (server["version"]) }
        section aria-labelledby="config-h" {
            h2 #config-h { "Configuration" }
            (config_table(&server))
        }
        section aria-labelledby="tools-h" {
            h2 #tools-h { "Tools" }
            (server_tools_slot(&server))
            @if caller.principal.role >= Role::Operator {
                div.problem role="alert" {}
                button type="button" hx-post={"/console/servers/" (id) "/test"} hx-target="#test-result" { "Test the MCP handshake" }
            }
            div #test-result aria-live="polite" {}
        }
        section aria-labelledby="logs-h" {
            h2 #logs-h { "Logs" }
            button type="button" data-follow-logs="#logs" data-url={"/api/v1/servers/" (id) "/logs?follow=true&tail=200"} { "Follow the logs" }
            pre #logs .logs tabindex="0" aria-label="Server output" {}
        }
        section aria-labelledby="time-h" {
            h2 #time-h { "As it was" }
            @if positions.is_empty() {
                p { "No history." }
            } @else {
                label for="time-slider" { "Position in this server's history" }
                // The slider picks a change; console.js puts its position in the hidden
                // field, which is what is sent.
                input #time-slider type="range" name="index" min="0" max=(last) value=(last) step="1"
                    data-positions=(positions.join(",")) data-label="time-label" data-position="time-position"
                    hx-get={"/console/servers/" (id) "/at"} hx-trigger="change, input delay:300ms"
                    hx-params="position" hx-include="#time-position"
                    hx-target="#as-of" hx-swap="innerHTML";
                input #time-position type="hidden" name="position" value=(positions[last]);
                output #time-label for="time-slider" { "position " (positions[last]) }
                div #as-of aria-live="polite" { (as_of(&server, positions[last].parse().unwrap_or_default())) }
            }
        }
        section aria-labelledby="history-h" {
            h2 #history-h { "History" }
            (history_table(&history))
        }
    };
    Ok(page(
        text(&server, "name"),
        &caller,
        Section::Servers,
        Some(Live::after(at, "servers,tools")),
        content,
    ))
}

/// Query of `GET /console/servers/{id}/at`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtQuery {
    /// A global position of the event log.
    position: i64,
}

/// `GET /console/servers/{id}/at?position=P`: the server as it was at position P.
pub async fn at(
    state: web::Data<AppState>,
    caller: ConsoleCaller,
    id: web::Path<ServerId>,
    ConsoleQuery(query): ConsoleQuery<AtQuery>,
) -> Result<Markup, ConsoleError> {
    let id = id.into_inner();
    let position = query.position;
    if position < 0 {
        return Err(ApiError::invalid_field("position", "must be 0 or more").into());
    }
    let past = server(
        &state,
        &caller,
        id,
        ServerReadQuery {
            min_position: None,
            at: Some(position.to_string()),
        },
    )
    .await?;
    Ok(as_of(&past, position))
}

/// `POST /console/servers/{id}/test`: the API's test, shown.
pub async fn test(
    state: web::Data<AppState>,
    caller: ConsoleCaller,
    id: web::Path<ServerId>,
) -> Result<Markup, ConsoleError> {
    let result = json_of(server_runtime::test(state, caller.context, id).await).await?;
    Ok(html! {
        @if result["ok"] == Value::Bool(true) {
            p { "Handshake answered in " (result["latency_ms"]) " ms, protocol " (text(&result, "protocol_version"))
                ", " (result["tools"].as_array().map_or(0, Vec::len)) " tools." }
        } @else {
            p.problem { "The handshake failed: " (text(&result, "error")) }
        }
    })
}
