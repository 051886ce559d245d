//! `GET /console/live`: what a console page shows, kept current from the event stream.
//! It is the live subscription of `GET /api/v1/events/stream` (same visibility, same
//! revocation rules, same resumption by `Last-Event-ID`); instead of the events
//! themselves it sends the page fragments they change, under names the page's
//! `sse-swap` attributes listen for. Nothing polls.

use actix_web::{web, HttpRequest, HttpResponse};
use berth_domain::BulkId;
use berth_domain::ServerId;
use berth_infrastructure::feed::StoredEvent;
use maud::Markup;
use serde::Deserialize;

use crate::console::answer::json_of;
use crate::console::caller::{ConsoleCaller, ConsoleError};
use crate::console::fragments;
use crate::console::query::ConsoleQuery;
use crate::http::auth::Principal;
use crate::http::extract::ApiQuery;
use crate::http::live::{Delivery, StreamEnd};
use crate::http::routes::bulk;
use crate::http::routes::catalog::ReadQuery;
use crate::http::routes::event_stream::{self, StreamQuery};
use crate::http::routes::servers::{self, ServerReadQuery};
use crate::http::state::AppState;

/// Query of `GET /console/live`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveQuery {
    /// The position the page was read at.
    #[serde(default)]
    after: i64,
    /// What the page shows: `servers` (their status), `tools` (theirs), `bulk`,
    /// `events`, comma separated.
    #[serde(default)]
    topics: String,
    /// Only events of this aggregate type (the events topic).
    aggregate_type: Option<String>,
    /// Only events of this type (the events topic).
    event_type: Option<String>,
}

/// What a page follows.
#[derive(Debug, Clone, Copy, Default)]
struct Topics {
    servers: bool,
    tools: bool,
    bulk: bool,
    events: bool,
}

impl Topics {
    fn parse(list: &str) -> Self {
        let has = |name| list.split(',').any(|t| t.trim() == name);
        Self {
            servers: has("servers"),
            tools: has("tools"),
            bulk: has("bulk"),
            events: has("events"),
        }
    }
}

/// One SSE message named `name` carrying `html`. Line breaks inside it (a server's error,
/// which its own output fills) are written as character references: SSE ends a line at a
/// CR as well as an LF, and a server must not be able to add fields to the message. An
/// empty fragment still gets its `data:` line: a message without one is never delivered.
fn frame(name: &str, position: i64, html: &Markup) -> String {
    let data = html.0.replace('\r', "&#13;").replace('\n', "&#10;");
    format!("event: {name}\nid: {position}\ndata: {data}\n\n")
}

/// The fragments `event` changes on a page following `topics`, read once the read
/// models have it.
async fn fragments_of(
    state: &web::Data<AppState>,
    principal: &Principal,
    topics: Topics,
    event: &StoredEvent,
) -> String {
    let mut out = String::new();
    let position = event.position;
    if (topics.servers || topics.tools) && event.aggregate_type == "server" {
        if let Ok(id) = event.aggregate_id.parse::<uuid::Uuid>() {
            let read = servers::get(
                state.clone(),
                principal.clone(),
                web::Path::from(ServerId::from(id)),
                ApiQuery(ServerReadQuery {
                    min_position: Some(position),
                    at: None,
                }),
            )
            .await;
            match json_of(read).await {
                Ok(server) => {
                    if topics.servers {
                        out.push_str(&frame(
                            &fragments::server_topic(&event.aggregate_id),
                            position,
                            &fragments::server_status(&server),
                        ));
                    }
                    if topics.tools {
                        out.push_str(&frame(
                            &fragments::tools_topic(&event.aggregate_id),
                            position,
                            &fragments::server_tools(&server),
                        ));
                    }
                }
                // Deleted: lists drop it at their next load.
                Err(e) => tracing::debug!(error = %e, "no server fragment for an event"),
            }
        }
        if matches!(event.event_type.as_str(), "ServerCreated" | "ServerDeleted") {
            out.push_str(&frame("servers", position, &maud::html! {}));
        }
    }
    if topics.bulk && event.aggregate_type == "bulk_operation" {
        if let Ok(id) = event.aggregate_id.parse::<uuid::Uuid>() {
            let read = bulk::get(
                state.clone(),
                principal.clone(),
                web::Path::from(BulkId::from(id)),
                ApiQuery(ReadQuery {
                    min_position: Some(position),
                }),
            )
            .await;
            if let Ok(view) = json_of(read).await {
                out.push_str(&frame(
                    &fragments::bulk_topic(&event.aggregate_id),
                    position,
                    &fragments::bulk_progress(&view),
                ));
            }
        }
    }
    if topics.events {
        let json: serde_json::Value =
            serde_json::from_str(&event_stream::event_json(event)).unwrap_or_default();
        out.push_str(&frame("event", position, &fragments::event_row(&json)));
    }
    out
}

/// A revoked key or disabled user ends the session: `signed-out` tells the page. Any
/// other end says nothing, and the browser reconnects and resumes after the last id it
/// saw.
fn end_frame(end: &StreamEnd) -> String {
    match end {
        StreamEnd::Revoked { .. } => {
            format!("event: signed-out\nid: {}\ndata: \n\n", end.last_position())
        }
        _ => String::new(),
    }
}

/// `GET /console/live`.
pub async fn live(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ConsoleCaller,
    ConsoleQuery(query): ConsoleQuery<LiveQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let after = event_stream::resume_position(req.headers(), Some(query.after))?;
    let filter = StreamQuery {
        after: None,
        aggregate_type: query.aggregate_type,
        aggregate_id: None,
        event_type: query.event_type,
    };
    let subscription =
        event_stream::subscribe(&state, caller.principal.clone(), after, filter).await?;
    let heartbeat = state.live.options.heartbeat;
    let topics = Topics::parse(&query.topics);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(event_stream::sse_body(
            subscription,
            heartbeat,
            move |delivery| {
                let state = state.clone();
                let principal = caller.principal.clone();
                async move {
                    web::Bytes::from(match delivery {
                        Delivery::Event(event) => {
                            fragments_of(&state, &principal, topics, &event).await
                        }
                        Delivery::End(end) => end_frame(&end),
                    })
                }
            },
        )))
}

#[cfg(test)]
mod tests {
    use maud::html;

    use super::frame;

    #[test]
    fn a_fragment_is_one_message_whatever_its_text_holds() {
        let hostile = "oops\r\revent: signed-out\rid: 999999999\ndata: x\r\n\r\n";
        let sent = frame("server-1", 7, &html! { span { (hostile) } });
        assert_eq!(sent.matches('\r').count(), 0, "{sent:?}");
        // Fields are the first three lines; the blank line ends the one message.
        let lines: Vec<&str> = sent.split('\n').collect();
        assert_eq!(lines.len(), 5, "{sent:?}");
        assert_eq!(lines[0], "event: server-1");
        assert_eq!(lines[1], "id: 7");
        assert!(lines[2].starts_with("data: <span>oops&#13;&#13;event: signed-out"));
        assert_eq!(&lines[3..], ["", ""]);
    }

    #[test]
    fn an_empty_fragment_still_carries_data() {
        assert_eq!(
            frame("servers", 3, &html! {}),
            "event: servers\nid: 3\ndata: \n\n"
        );
    }
}
