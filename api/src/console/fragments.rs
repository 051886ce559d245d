//! Parts of pages that the live stream sends again when their subject changes: a
//! server's status, a bulk operation's progress, a row of the event log. The page and
//! the stream render them with the same function, so an update looks like a reload.

use maud::{html, Markup};
use serde_json::Value;

use crate::console::answer::text;
use crate::console::layout::{json_block, state_badge};

/// The SSE event name a server's status is sent under.
pub fn server_topic(id: &str) -> String {
    format!("server-{id}")
}

/// The SSE event name a bulk operation's progress is sent under.
pub fn bulk_topic(id: &str) -> String {
    format!("bulk-{id}")
}

/// A server's state, health and last error, as text.
pub fn server_status(server: &Value) -> Markup {
    let health = text(server, "health");
    html! {
        (state_badge(text(server, "state")))
        " "
        span class={"health-" (health)} { "health: " (health) }
        @if server["enabled"] == Value::Bool(false) { " " span.badge { "disabled" } }
        @if let Some(error) = server["last_error"].as_str() {
            " " span.muted { "last error: " (error) }
        }
    }
}

/// The element a server's status lives in, following the live stream.
pub fn server_status_slot(server: &Value) -> Markup {
    let id = text(server, "id");
    html! {
        span.status data-server=(id) sse-swap=(server_topic(id)) { (server_status(server)) }
    }
}

/// The tools a server last reported, each with its input schema.
pub fn server_tools(server: &Value) -> Markup {
    let tools = server["tools"].as_array().cloned().unwrap_or_default();
    html! {
        @if tools.is_empty() {
            p.muted { "No tools reported yet: they are read when the server starts, or by the test." }
        }
        @for tool in &tools {
            details.tool {
                summary { code { (text(tool, "name")) } " " span.muted { (text(tool, "description")) } }
                @if !tool["input_schema"].is_null() { (json_block(&tool["input_schema"])) }
            }
        }
    }
}

/// The SSE event name a server's tools are sent under.
pub fn tools_topic(id: &str) -> String {
    format!("server-tools-{id}")
}

/// The element a server's tools live in, following the live stream.
pub fn server_tools_slot(server: &Value) -> Markup {
    html! {
        div.tools sse-swap=(tools_topic(text(server, "id"))) { (server_tools(server)) }
    }
}

/// A bulk operation's counts and each target's outcome.
pub fn bulk_progress(bulk: &Value) -> Markup {
    let total = bulk["total"].as_u64().unwrap_or_default();
    let done = bulk["succeeded"].as_u64().unwrap_or_default()
        + bulk["failed"].as_u64().unwrap_or_default();
    html! {
        p {
            "Bulk " (text(bulk, "operation")) ": "
            (state_badge(text(bulk, "state")))
            " " (done) " of " (total) " done ("
            (bulk["succeeded"].as_u64().unwrap_or_default()) " succeeded, "
            (bulk["failed"].as_u64().unwrap_or_default()) " failed)"
        }
        progress max=(total) value=(done) aria-label="Bulk progress" { (done) "/" (total) }
        ul.bulk-results {
            @for result in bulk["results"].as_array().into_iter().flatten() {
                li {
                    a href={"/servers/" (text(result, "server_id"))} { (text(result, "server_id")) }
                    ": " (text(result, "outcome"))
                    @if let Some(error) = result["error"].as_str() { " — " (error) }
                }
            }
        }
    }
}

/// The element a bulk operation's progress lives in, following the live stream.
pub fn bulk_slot(bulk: &Value) -> Markup {
    html! {
        div.bulk sse-swap=(bulk_topic(text(bulk, "id"))) { (bulk_progress(bulk)) }
    }
}

/// One event of the log as a table row.
pub fn event_row(event: &Value) -> Markup {
    let position = event["position"].as_i64().unwrap_or_default();
    let actor = event["metadata"]["actor"].as_str().unwrap_or_default();
    html! {
        tr {
            td { a href={"/events/" (position)} { (position) } }
            td { (text(event, "recorded_at")) }
            td { (text(event, "aggregate_type")) }
            td { (text(event, "aggregate_id")) }
            td { (text(event, "event_type")) }
            td { (actor) }
        }
    }
}
