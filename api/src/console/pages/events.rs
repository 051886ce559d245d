//! `GET /events`: the event log as it happens (the latest events, then each new one
//! from the live stream), filtered by aggregate and event type; `GET /events/{position}`
//! shows one event whole.

use actix_web::web;
use maud::{html, Markup};
use serde::Deserialize;

use crate::console::answer::{head, json_of};
use crate::console::caller::{ConsoleCaller, ConsoleError};
use crate::console::fragments::event_row;
use crate::console::layout::{json_block, page, Live, Section};
use crate::console::query::ConsoleQuery;
use crate::http::extract::ApiQuery;
use crate::http::routes::events::{self, EventsQuery};
use crate::http::state::AppState;

/// How many of the latest events the page starts with.
const LATEST: i64 = 100;

/// Query of `GET /events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsPageQuery {
    aggregate_type: Option<String>,
    event_type: Option<String>,
}

/// `GET /events`.
pub async fn list(
    state: web::Data<AppState>,
    caller: ConsoleCaller,
    ConsoleQuery(query): ConsoleQuery<EventsPageQuery>,
) -> Result<Markup, ConsoleError> {
    let at = head(&state).await?;
    let answer = events::list(
        state.clone(),
        caller.principal.clone(),
        ApiQuery(EventsQuery {
            after: Some((at - LATEST).max(0)),
            aggregate_type: query.aggregate_type.clone(),
            aggregate_id: None,
            event_type: query.event_type.clone(),
            limit: Some(LATEST),
            min_position: None,
        }),
    )
    .await;
    let listed = json_of(answer).await?;
    // The stream starts after the last event listed, not at `at`: one committed since
    // would otherwise show twice.
    let mut live = Live::after(listed["next"].as_i64().unwrap_or(at), "events");
    if let Some(t) = &query.aggregate_type {
        live.filters.push(("aggregate_type", t.clone()));
    }
    if let Some(t) = &query.event_type {
        live.filters.push(("event_type", t.clone()));
    }
    let content = html! {
        form.filters method="get" action="/events" {
            div { label for="aggregate_type" { "Aggregate type" }
                input #aggregate_type type="text" name="aggregate_type" value=(query.aggregate_type.clone().unwrap_or_default()) placeholder="server"; }
            div { label for="event_type" { "Event type" }
                input #event_type type="text" name="event_type" value=(query.event_type.clone().unwrap_or_default()) placeholder="ServerStarted"; }
            button type="submit" { "Filter" }
        }
        p.muted { "The latest events, and each new one as it is written." }
        table {
                thead { tr {
                    th scope="col" { "Position" } th scope="col" { "Recorded" } th scope="col" { "Aggregate" }
                    th scope="col" { "Id" } th scope="col" { "Type" } th scope="col" { "Actor" }
                } }
                tbody #event-rows sse-swap="event" hx-swap="beforeend" {
                    @for event in listed["events"].as_array().into_iter().flatten() { (event_row(event)) }
                }
        }
    };
    Ok(page(
        "Events",
        &caller,
        Section::Events,
        Some(live),
        content,
    ))
}

/// `GET /events/{position}`.
pub async fn show(
    state: web::Data<AppState>,
    caller: ConsoleCaller,
    position: web::Path<String>,
) -> Result<Markup, ConsoleError> {
    let title = format!("Event {position}");
    let event =
        json_of(events::get(state.clone(), caller.principal.clone(), position).await).await?;
    let content = html! {
        p { a href={"/events?aggregate_type=" (event["aggregate_type"].as_str().unwrap_or_default())} { "Events of this kind" } }
        (json_block(&event))
    };
    Ok(page(&title, &caller, Section::Events, None, content))
}
