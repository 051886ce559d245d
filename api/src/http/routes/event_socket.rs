//! `GET /api/v1/events/ws`: the live event stream of `GET /api/v1/events/stream` over a
//! WebSocket, one JSON text message per event.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use crate::http::auth::Principal;
use crate::http::extract::ApiQuery;
use crate::http::live::{Delivery, LiveSubscription, StreamEnd};
use crate::http::problem::{ApiError, Problem};
use crate::http::routes::event_stream::{self, StreamQuery};
use crate::http::state::AppState;

/// Pings a client may leave unanswered before it is taken for gone.
const MISSED_PONGS: u32 = 3;

/// Follows the event log live over a WebSocket.
///
/// The same stream as `GET /api/v1/events/stream` (same cursor — `after`, or a
/// `Last-Event-ID` header — and filters): each event is one JSON text message, the
/// object `GET /api/v1/events` lists (`position` included). The server pings every 15 s
/// and closes a connection that stops answering. A client that falls too far behind gets
/// a final message `{"type": "lagged", "last_event_id": N, "detail": …}` and a close
/// (code 1013, try again later): reconnect with `after=N` to resume. When Berth stops the
/// final message is of type `shutdown` (close code 1001), when the store cannot be read
/// `unavailable` (1011).
#[utoipa::path(
    get,
    path = "/api/v1/events/ws",
    tag = "events",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after the event at this position (wins over `after`)"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; then one JSON text message per event \
(as `GET /api/v1/events` lists it), and possibly a final `{\"type\": \"lagged\"|\"shutdown\"|\"unavailable\", \"last_event_id\", \"detail\"}` before the close"),
        (status = 400, description = "Not a WebSocket handshake, or a malformed parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Parameter out of range", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The event store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn socket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let after = event_stream::resume_position(req.headers(), query.after)?;
    let (response, session, messages) =
        actix_ws::handle(&req, body).map_err(|e| ApiError::BadRequest {
            detail: format!("not a WebSocket handshake: {e}"),
            errors: Vec::new(),
        })?;
    let subscription = event_stream::subscribe(&state, principal, after, query).await?;
    actix_web::rt::spawn(forward(
        session,
        messages,
        subscription,
        state.live.options.heartbeat,
    ));
    Ok(response)
}

/// Writes deliveries to the socket, answers pings, pings the client and notices it go.
async fn forward(
    mut session: Session,
    mut messages: MessageStream,
    mut subscription: LiveSubscription,
    heartbeat: Duration,
) {
    let mut ticks = interval_at(Instant::now() + heartbeat, heartbeat);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut unanswered = 0u32;
    let close = loop {
        tokio::select! {
            delivery = subscription.next() => match delivery {
                Some(Delivery::Event(event)) => {
                    if session.text(event_stream::event_json(&event)).await.is_err() {
                        return;
                    }
                }
                Some(Delivery::End(end)) => {
                    if session.text(end.to_json().to_string()).await.is_err() {
                        return;
                    }
                    break Some(close_reason(&end));
                }
                None => break None,
            },
            message = messages.recv() => match message {
                Some(Ok(Message::Ping(bytes))) => {
                    unanswered = 0;
                    if session.pong(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Ok(_)) => unanswered = 0,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "a WebSocket client broke the protocol");
                    break Some(CloseReason::from(CloseCode::Protocol));
                }
            },
            _ = ticks.tick() => {
                if unanswered >= MISSED_PONGS {
                    tracing::debug!("a WebSocket client stopped answering pings");
                    break Some(CloseReason::from(CloseCode::Away));
                }
                unanswered += 1;
                if session.ping(b"").await.is_err() {
                    return;
                }
            }
        }
    };
    let _ = session.close(close).await;
}

fn close_reason(end: &StreamEnd) -> CloseReason {
    let code = match end {
        StreamEnd::Lagged { .. } => CloseCode::Again,
        StreamEnd::ShuttingDown { .. } => CloseCode::Away,
        StreamEnd::Unavailable { .. } => CloseCode::Error,
        StreamEnd::Revoked { .. } => CloseCode::Policy,
    };
    CloseReason {
        code,
        description: Some(end.kind().to_string()),
    }
}
