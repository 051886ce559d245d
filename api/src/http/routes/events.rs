//! `GET /api/v1/events` and `GET /api/v1/servers/{id}/events`: the event log itself,
//! paged with an `after` cursor in commit order; `GET /api/v1/events/{position}`: one
//! event, where audit entries and histories link to.

use actix_web::{web, HttpResponse};
use berth_domain::server::Server;
use berth_domain::ServerId;
use berth_infrastructure::feed::{self, FeedFilter};
use berth_infrastructure::stream::read_at_position;
use cqrs_es::Aggregate;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::http::auth::Principal;
use crate::http::consistency::await_released;
use crate::http::dto::events::{EventDto, EventPage};
use crate::http::extract::ApiQuery;
use crate::http::problem::{ApiError, ProblemField};
use crate::http::state::AppState;
use berth_application::access::ensure_visible;

/// Events per page when the caller does not say.
pub const DEFAULT_LIMIT: i64 = 100;
/// The most events a page may hold.
pub const MAX_LIMIT: i64 = 1000;

/// Query parameters of `GET /api/v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Return events after the one at this position (the previous page's `next`); 0 or
    /// absent starts at the beginning.
    pub after: Option<i64>,
    /// Only events of this aggregate type (`server`, `catalog_entry`).
    pub aggregate_type: Option<String>,
    /// Only events of this aggregate.
    pub aggregate_id: Option<String>,
    /// Only events of this type, e.g. `ServerStartRequested`.
    pub event_type: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// Wait (at most 5 s) until the event at this position can be listed: pass the
    /// `position` a command answered to see it (read-your-writes).
    pub min_position: Option<i64>,
}

/// Query parameters of `GET /api/v1/servers/{id}/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ServerEventsQuery {
    /// Return events after the one at this position (the previous page's `next`).
    pub after: Option<i64>,
    /// Events per page, 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// Wait (at most 5 s) until the event at this position can be listed.
    pub min_position: Option<i64>,
}

fn checked(after: Option<i64>, limit: Option<i64>) -> Result<(i64, i64), ApiError> {
    let after = after.unwrap_or(0);
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    let mut errors = Vec::new();
    if after < 0 {
        errors.push(ProblemField {
            field: "after".into(),
            message: "must be 0 or more".into(),
        });
    }
    if !(1..=MAX_LIMIT).contains(&limit) {
        errors.push(ProblemField {
            field: "limit".into(),
            message: format!("must be between 1 and {MAX_LIMIT}"),
        });
    }
    if errors.is_empty() {
        Ok((after, limit))
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// Reads one page: `after` is translated into the feed checkpoint of that event, so the
/// page continues in commit order exactly where the previous one stopped.
async fn page(
    state: &AppState,
    after: i64,
    limit: i64,
    filter: &FeedFilter,
) -> Result<EventPage, ApiError> {
    let client = state.pool.get().await?;
    let checkpoint = feed::checkpoint_at_position(&client, after).await?;
    let events = feed::read_after(&client, checkpoint, limit, filter).await?;
    let next = events.last().map_or(after, |e| e.position);
    Ok(EventPage {
        events: events
            .iter()
            .map(EventDto::try_from)
            .collect::<Result<_, _>>()?,
        next,
    })
}

/// Reads the event log.
///
/// Events come in **commit order** — the order their transactions committed, which is
/// not always the order of their `position`s: a transaction that took a lower position
/// may commit after one that took a higher position. Events of transactions still open
/// are held back, so a reader following `next` never skips an event. Pass the answer's
/// `next` as `after` to read the following page; an empty page keeps `next` unchanged.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of events in commit order", body = EventPage),
        (status = 400, description = "Malformed parameter", body = crate::http::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = crate::http::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Parameter out of range", body = crate::http::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`min_position` not yet listed within 5 s", body = crate::http::problem::Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let (after, limit) = checked(query.after, query.limit)?;
    await_released(&state.pool, query.min_position).await?;
    let filter = FeedFilter {
        aggregate_type: query.aggregate_type,
        aggregate_id: query.aggregate_id,
        event_type: query.event_type,
        owner: principal.owner_filter(),
    };
    Ok(HttpResponse::Ok().json(page(&state, after, limit, &filter).await?))
}

/// Reads one server's own events, oldest first (deleted servers' events included).
#[utoipa::path(
    get,
    path = "/api/v1/servers/{id}/events",
    tag = "events",
    params(("id" = Uuid, Path, description = "The server's id"), ServerEventsQuery),
    responses(
        (status = 200, description = "A page of the server's events, oldest first", body = EventPage),
        (status = 401, description = "No or bad token", body = crate::http::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such server", body = crate::http::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Parameter out of range", body = crate::http::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`min_position` not yet listed within 5 s", body = crate::http::problem::Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(server_id = %id))]
pub async fn server_events(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<ServerId>,
    ApiQuery(query): ApiQuery<ServerEventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    ensure_visible(&*state.owners, &principal, id, "no server has this id").await?;
    let (after, limit) = checked(query.after, query.limit)?;
    await_released(&state.pool, query.min_position).await?;
    let server = state.bus.load_server(id).await?;
    if !server.created {
        return Err(ApiError::NotFound("no server has this id".into()));
    }
    let filter = FeedFilter {
        aggregate_type: Some(Server::TYPE.to_string()),
        aggregate_id: Some(id.to_string()),
        event_type: None,
        owner: None,
    };
    Ok(HttpResponse::Ok().json(page(&state, after, limit, &filter).await?))
}

/// Reads the event at one global position (an audit entry's `event` link). Callers who
/// are not administrators see only events of their own streams, as in the event list.
#[utoipa::path(
    get,
    path = "/api/v1/events/{position}",
    tag = "events",
    params(("position" = i64, Path, description = "The event's global position")),
    responses(
        (status = 200, description = "The event", body = EventDto),
        (status = 400, description = "The position is not a whole number", body = crate::http::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = crate::http::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No event has this position (or the caller may not see it)", body = crate::http::problem::Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(position = %position))]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    position: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let position: i64 = position
        .parse()
        .map_err(|_| ApiError::bad_field("position", "must be a whole number"))?;
    let client = state.pool.get().await?;
    match read_at_position(&client, position).await? {
        Some(event) if principal.may_see(event.owner.as_deref()) => {
            Ok(HttpResponse::Ok().json(EventDto::try_from(&event)?))
        }
        _ => Err(ApiError::NotFound("no event has this position".into())),
    }
}
