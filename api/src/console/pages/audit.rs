//! `GET /audit`: who did what, when, filtered and paged like `GET /api/v1/audit`, with
//! export links and a link from each entry to its event.

use actix_web::{web, HttpRequest};
use maud::{html, Markup};

use crate::console::answer::{head, items, json_of, text};
use crate::console::caller::{ConsoleCaller, ConsoleError};
use crate::console::layout::{page, Section};
use crate::console::pages::servers::pager;
use crate::console::query::{filter_value, filters_of, ConsoleQuery};
use crate::http::extract::ApiQuery;
use crate::http::routes::audit::{self, AuditQuery};
use crate::http::state::AppState;

fn filter_input(id: &str, label: &str, value: Option<String>, hint: &str) -> Markup {
    html! {
        div {
            label for=(id) { (label) }
            input id=(id) type="text" name=(id) value=(value.unwrap_or_default()) placeholder=(hint);
        }
    }
}

/// `GET /audit`.
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ConsoleCaller,
    ConsoleQuery(mut query): ConsoleQuery<AuditQuery>,
) -> Result<Markup, ConsoleError> {
    let filters = filters_of(req.query_string());
    let shown = |name: &str| filter_value(&filters, name);
    query.min_position = Some(head(&state).await?);
    let page_json =
        json_of(audit::list(state.clone(), caller.principal.clone(), ApiQuery(query)).await)
            .await?;
    let export = |format: &str| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("format", format);
        for name in ["from", "to"] {
            if let Some(v) = shown(name) {
                q.append_pair(name, &v);
            }
        }
        format!("/api/v1/audit/export?{}", q.finish())
    };
    let content = html! {
        form.filters method="get" action="/audit" {
            (filter_input("actor", "Actor", shown("actor"), "user:admin"))
            (filter_input("server_id", "Server id", shown("server_id"), "uuid"))
            (filter_input("action", "Action", shown("action"), "server.start_requested"))
            (filter_input("from", "From", shown("from"), "2026-01-31T00:00:00Z"))
            (filter_input("to", "To", shown("to"), "2026-02-01T00:00:00Z"))
            button type="submit" { "Filter" }
        }
        p { "Export: " a href=(export("jsonl")) { "JSON lines" } " · " a href=(export("csv")) { "CSV" } }
        table {
            thead { tr {
                th scope="col" { "Event" } th scope="col" { "When" } th scope="col" { "Actor" }
                th scope="col" { "Action" } th scope="col" { "Target" } th scope="col" { "Summary" }
            } }
            tbody {
                @for entry in items(&page_json) {
                    tr {
                        td { a href={"/events/" (entry["position"])} { (entry["position"]) } }
                        td { (text(entry, "at")) }
                        td { (text(entry, "actor")) }
                        td { (text(entry, "action")) }
                        td {
                            @if text(entry, "target_type") == "server" {
                                a href={"/servers/" (text(entry, "target_id"))} { "server " (text(entry, "target_id")) }
                            } @else {
                                (text(entry, "target_type")) " " (text(entry, "target_id"))
                            }
                        }
                        td { (text(entry, "summary")) }
                    }
                }
            }
        }
        (pager("/audit", &filters, &page_json))
    };
    Ok(page("Audit", &caller, Section::Audit, None, content))
}
