//! `GET /servers`: the caller's servers with their state following the event stream,
//! lifecycle buttons, and bulk actions on a selection with live progress.

use actix_web::{web, HttpRequest};
use berth_domain::user::Role;
use berth_domain::BulkId;
use maud::{html, Markup};
use serde_json::Value;

use crate::console::answer::{head, items, json_of, text};
use crate::console::caller::{ConsoleCaller, ConsoleError};
use crate::console::fragments::{bulk_slot, server_status_slot};
use crate::console::layout::{page, Live, Section};
use crate::console::query::{filter_value, filters_of, page_link, ConsoleQuery};
use crate::http::extract::ApiQuery;
use crate::http::routes::bulk;
use crate::http::routes::catalog::ReadQuery;
use crate::http::routes::servers::{self, ServerListQuery};
use crate::http::state::AppState;

const STATES: [&str; 7] = [
    "stopped", "pending", "creating", "starting", "running", "stopping", "failed",
];

/// The lifecycle buttons of one server (none for viewers: they could not use them).
pub fn lifecycle_buttons(caller: &ConsoleCaller, server: &Value) -> Markup {
    let id = text(server, "id");
    let name = text(server, "name");
    html! {
        @if caller.principal.role >= Role::Operator {
            span.actions {
                @for (action, label) in [("start", "Start"), ("stop", "Stop"), ("restart", "Restart")] {
                    button type="button" hx-post={"/api/v1/servers/" (id) "/" (action)} hx-swap="none"
                        hx-params="none" aria-label={(label) " " (name)} { (label) }
                }
            }
        }
    }
}

fn row(caller: &ConsoleCaller, server: &Value) -> Markup {
    let id = text(server, "id");
    let name = text(server, "name");
    let may_operate = caller.principal.role >= Role::Operator;
    html! {
        tr {
            @if may_operate {
                td { input type="checkbox" name="server_ids[]" value=(id) aria-label={"Select " (name)}; }
            }
            td { a href={"/servers/" (id)} { (name) } }
            td { (server_status_slot(server)) }
            td { (lifecycle_buttons(caller, server)) }
        }
    }
}

fn rows(caller: &ConsoleCaller, page: &Value) -> Markup {
    html! {
        @for server in items(page) { (row(caller, server)) }
        @if items(page).is_empty() {
            tr { td colspan="4" { "No servers yet. " a href="/catalog" { "Create one from the catalog." } } }
        }
    }
}

async fn read(
    state: &web::Data<AppState>,
    caller: &ConsoleCaller,
    mut query: ServerListQuery,
) -> Result<(i64, Value), ConsoleError> {
    let head = head(state).await?;
    query.min_position = Some(head);
    let answer = servers::list(state.clone(), caller.principal.clone(), ApiQuery(query)).await;
    Ok((head, json_of(answer).await?))
}

/// `GET /servers`.
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ConsoleCaller,
    ConsoleQuery(query): ConsoleQuery<ServerListQuery>,
) -> Result<Markup, ConsoleError> {
    let filters = filters_of(req.query_string());
    let q = query.q.clone().unwrap_or_default();
    let chosen = filter_value(&filters, "state").unwrap_or_default();
    let (head, page_json) = read(&state, &caller, query).await?;
    let may_operate = caller.principal.role >= Role::Operator;
    let rows_url = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.extend_pairs(&filters);
        format!("/console/servers/rows?{}", query.finish())
    };
    let table = html! {
        table {
            caption.muted { (page_json["total"]) " servers" }
            thead { tr {
                @if may_operate { th scope="col" { "Select" } }
                th scope="col" { "Name" } th scope="col" { "Status" } th scope="col" { "Actions" }
            } }
            tbody #server-rows hx-get=(rows_url) hx-trigger="sse:servers" hx-swap="innerHTML" {
                (rows(&caller, &page_json))
            }
        }
    };
    let content = html! {
        form.filters method="get" action="/servers" {
            div { label for="q" { "Name contains" } input #q type="search" name="q" value=(q); }
            div {
                label for="state" { "State" }
                select #state name="state" {
                    option value="" { "any" }
                    @for s in STATES { option value=(s) selected[chosen == s] { (s) } }
                }
            }
            button type="submit" { "Filter" }
        }
        @if may_operate {
            form #bulk hx-post="/api/v1/bulk" hx-ext="berth-json" hx-swap="none"
                data-then-get="/console/bulk/{id}" data-then-target="#bulk-progress" {
                div.problem role="alert" {}
                (table)
                fieldset.actions {
                    legend { "With the selected servers" }
                    @for (operation, label) in [("start", "Start"), ("stop", "Stop"), ("restart", "Restart"), ("disable", "Disable"), ("enable", "Enable"), ("delete", "Delete")] {
                        button type="submit" name="operation" value=(operation) { (label) " selected" }
                    }
                }
            }
        } @else {
            (table)
        }
        div #bulk-progress aria-live="polite" {}
        (pager("/servers", &filters, &page_json))
    };
    Ok(page(
        "Servers",
        &caller,
        Section::Servers,
        Some(Live::after(head, "servers,bulk")),
        content,
    ))
}

/// Previous and next links of a listed page, keeping its filters.
pub fn pager(path: &str, filters: &[(String, String)], page: &Value) -> Markup {
    // The page number comes from the query string: any i64 the API accepted.
    let number = page["page"].as_i64().unwrap_or(1);
    let size = page["page_size"].as_i64().unwrap_or(50).max(1);
    let total = page["total"].as_i64().unwrap_or(0);
    let pages = (total / size + i64::from(total % size != 0)).max(1);
    html! {
        nav.pager aria-label="Pages" {
            @if number > 1 { a rel="prev" href=(page_link(path, filters, (number - 1).min(pages))) { "Previous" } " " }
            span { "Page " (number) " of " (pages) }
            @if number < pages { " " a rel="next" href=(page_link(path, filters, number + 1)) { "Next" } }
        }
    }
}

/// `GET /console/servers/rows`: the table's rows again (a server was created or deleted).
pub async fn rows_fragment(
    state: web::Data<AppState>,
    caller: ConsoleCaller,
    ConsoleQuery(query): ConsoleQuery<ServerListQuery>,
) -> Result<Markup, ConsoleError> {
    let (_, page_json) = read(&state, &caller, query).await?;
    Ok(rows(&caller, &page_json))
}

/// `GET /console/bulk/{id}`: a bulk operation's progress, following the live stream.
pub async fn bulk_fragment(
    state: web::Data<AppState>,
    caller: ConsoleCaller,
    id: web::Path<BulkId>,
) -> Result<Markup, ConsoleError> {
    let head = head(&state).await?;
    let answer = bulk::get(
        state.clone(),
        caller.principal.clone(),
        id,
        ApiQuery(ReadQuery {
            min_position: Some(head),
        }),
    )
    .await;
    Ok(bulk_slot(&json_of(answer).await?))
}
