//! `GET /api/v1/events/stream`: the event log as server-sent events, from a cursor
//! onwards and then live, with the filters of `GET /api/v1/events`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, HttpResponse};
use berth_infrastructure::feed::{self, FeedFilter, StoredEvent};
use std::future::Future;

use futures_util::future::ready;
use futures_util::Stream;
use serde::Deserialize;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};
use utoipa::IntoParams;

use crate::http::auth::{Credential, Principal};
use crate::http::dto::events::EventDto;
use crate::http::extract::ApiQuery;
use crate::http::live::{
    visibility, Delivery, LiveSubscription, StreamCredential, StreamEnd, StreamRequest,
};
use crate::http::problem::{ApiError, Problem};
use crate::http::state::AppState;

/// The header a reconnecting SSE client sends with the last `id:` it received.
pub const LAST_EVENT_ID: &str = "Last-Event-ID";

/// The comment an idle SSE stream sends every heartbeat interval.
pub const KEEP_ALIVE: &str = ": keep-alive\n\n";

/// Query parameters of the live event streams.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Start after the event at this position; 0 or absent starts at the beginning. A
    /// `Last-Event-ID` header takes precedence.
    pub after: Option<i64>,
    /// Only events of this aggregate type (`server`, `catalog_entry`).
    pub aggregate_type: Option<String>,
    /// Only events of this aggregate.
    pub aggregate_id: Option<String>,
    /// Only events of this type, e.g. `ServerStartRequested`.
    pub event_type: Option<String>,
}

/// The position to resume after: the `Last-Event-ID` header when present, else `after`.
/// A malformed `after` is refused even when the header wins.
pub fn resume_position(headers: &HeaderMap, after: Option<i64>) -> Result<i64, ApiError> {
    if after.is_some_and(|after| after < 0) {
        return Err(ApiError::invalid_field("after", "must be 0 or more"));
    }
    if let Some(value) = headers.get(LAST_EVENT_ID) {
        return value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|p| *p >= 0)
            .ok_or_else(|| {
                ApiError::bad_field(
                    LAST_EVENT_ID,
                    "must be an event position (a whole number, 0 or more)",
                )
            });
    }
    Ok(after.unwrap_or(0))
}

/// Opens a live subscription for `principal` from `after` with the query's filters.
pub async fn subscribe(
    state: &AppState,
    principal: Principal,
    after: i64,
    query: StreamQuery,
) -> Result<LiveSubscription, ApiError> {
    let checkpoint = {
        let client = state.pool.get().await?;
        feed::checkpoint_at_position(&client, after).await?
    };
    let credential = StreamCredential {
        user_id: principal.user_id,
        key_id: principal.credential.key_id(),
        expires_at: principal.credential.expires_at(),
        session_id: match principal.credential {
            Credential::Session { session_id, .. } => Some(session_id),
            _ => None,
        },
    };
    let request = StreamRequest {
        after_position: after,
        after: checkpoint,
        credential,
        filter: FeedFilter {
            aggregate_type: query.aggregate_type,
            aggregate_id: query.aggregate_id,
            event_type: query.event_type,
            owner: principal.owner_filter(),
        },
        visible: Arc::new(move |event| visibility::visible(&principal, event)),
    };
    Ok(LiveSubscription::open(
        &state.live,
        state.pool.clone(),
        request,
    ))
}

/// An event as the live streams send it: the object `GET /api/v1/events` lists.
pub fn event_json(event: &StoredEvent) -> String {
    let json = EventDto::try_from(event)
        .map_err(|e| e.to_string())
        .and_then(|dto| serde_json::to_string(&dto).map_err(|e| e.to_string()));
    json.unwrap_or_else(|e| {
        // Only a payload that is not JSON could get here, and the store holds JSON.
        tracing::error!(error = %e, position = event.position, "an event does not serialise");
        String::from("{}")
    })
}

/// One SSE message: `id: <position>` and `data: <event JSON>`.
fn event_frame(event: &StoredEvent) -> web::Bytes {
    // serde_json never writes a raw newline, so the JSON fits one `data:` line.
    web::Bytes::from(format!(
        "id: {}\ndata: {}\n\n",
        event.position,
        event_json(event)
    ))
}

/// The final SSE message: `event: lagged|shutdown|unavailable`, the id to resume after,
/// and `{"type", "last_event_id", "detail"}`.
fn end_frame(end: &StreamEnd) -> web::Bytes {
    web::Bytes::from(format!(
        "event: {}\nid: {}\ndata: {}\n\n",
        end.kind(),
        end.last_position(),
        end.to_json()
    ))
}

/// A live subscription as an SSE body: each delivery written as `frame` renders it, and
/// a `: keep-alive` comment whenever the stream has been idle for `heartbeat`. The body
/// ends after the subscription's last delivery.
pub fn sse_body<F, Fut>(
    subscription: LiveSubscription,
    heartbeat: Duration,
    frame: F,
) -> impl Stream<Item = Result<web::Bytes, Infallible>>
where
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = web::Bytes>,
{
    let mut ticks = interval_at(Instant::now() + heartbeat, heartbeat);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    futures_util::stream::unfold(
        (subscription, ticks, frame),
        |(mut subscription, mut ticks, frame): (LiveSubscription, Interval, F)| async move {
            let bytes = tokio::select! {
                delivery = subscription.next() => {
                    let delivery = delivery?;
                    if matches!(delivery, Delivery::Event(_)) {
                        ticks.reset();
                    }
                    frame(delivery).await
                }
                _ = ticks.tick() => web::Bytes::from_static(KEEP_ALIVE.as_bytes()),
            };
            Some((Ok(bytes), (subscription, ticks, frame)))
        },
    )
}

/// Follows the event log live, as server-sent events.
///
/// Sends every event after the cursor (`Last-Event-ID` header, else `after`, else from
/// the beginning) in commit order — the order of `GET /api/v1/events` — then each new
/// event as it is committed, with no gap and no repeat between the two. Each message is
///
/// ```text
/// id: <position>
/// data: <the event, as GET /api/v1/events lists it>
/// ```
///
/// An idle stream gets a `: keep-alive` comment every 15 s. A client that falls too far
/// behind gets a final `event: lagged` message (`data: {"type": "lagged",
/// "last_event_id": N, "detail": …}`) and the stream ends: reconnect with
/// `Last-Event-ID: N` to resume where it stopped. When Berth stops, streams end with
/// `event: shutdown`, and with `event: unavailable` when the store cannot be read.
#[utoipa::path(
    get,
    path = "/api/v1/events/stream",
    tag = "events",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after the event at this position (wins over `after`)"),
    ),
    responses(
        (status = 200, description = "Server-sent events: `id: <position>` and `data: <event JSON>` per event; \
`: keep-alive` comments; a final `event: lagged|shutdown|unavailable` with `data: {\"type\", \"last_event_id\", \"detail\"}`",
            body = String, content_type = "text/event-stream"),
        (status = 400, description = "Malformed parameter or `Last-Event-ID`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Parameter out of range", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The event store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn stream(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let after = resume_position(req.headers(), query.after)?;
    let subscription = subscribe(&state, principal, after, query).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Proxies such as nginx must not hold messages back.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(sse_body(
            subscription,
            state.live.options.heartbeat,
            |delivery| {
                ready(match delivery {
                    Delivery::Event(event) => event_frame(&event),
                    Delivery::End(end) => end_frame(&end),
                })
            },
        )))
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn headers(last_event_id: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = last_event_id {
            h.insert(
                header::HeaderName::from_static("last-event-id"),
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    }

    #[test]
    fn the_last_event_id_header_wins_over_after() {
        assert_eq!(
            resume_position(&headers(Some("42")), Some(7)).ok(),
            Some(42)
        );
        assert_eq!(resume_position(&headers(None), Some(7)).ok(), Some(7));
        assert_eq!(resume_position(&headers(None), None).ok(), Some(0));
        assert!(resume_position(&headers(Some("x")), None).is_err());
        assert!(resume_position(&headers(Some("-1")), None).is_err());
        assert!(resume_position(&headers(None), Some(-1)).is_err());
    }

    #[test]
    fn the_final_message_names_where_to_resume() {
        let frame = end_frame(&StreamEnd::Lagged { last_position: 42 });
        let text = String::from_utf8_lossy(&frame);
        assert!(text.starts_with("event: lagged\nid: 42\ndata: {"), "{text}");
        assert!(text.ends_with("}\n\n"), "{text}");
        assert!(text.contains("\"last_event_id\":42"), "{text}");
    }
}
