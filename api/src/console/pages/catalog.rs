//! `GET /catalog` and `GET /catalog/{id}`: entries the caller may see, their tools and
//! config schema, and a form, generated from the schema, that creates a server.

use actix_web::{web, HttpRequest};
use berth_domain::user::Role;
use berth_domain::CatalogEntryId;
use maud::{html, Markup};
use serde_json::Value;

use crate::console::answer::{head, items, json_of, text};
use crate::console::caller::{ConsoleCaller, ConsoleError};
use crate::console::layout::{page, Section};
use crate::console::pages::servers::pager;
use crate::console::query::{filters_of, ConsoleQuery};
use crate::http::extract::ApiQuery;
use crate::http::routes::catalog::{self, CatalogListQuery, ReadQuery};
use crate::http::state::AppState;

/// `GET /catalog`.
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ConsoleCaller,
    ConsoleQuery(mut query): ConsoleQuery<CatalogListQuery>,
) -> Result<Markup, ConsoleError> {
    let filters = filters_of(req.query_string());
    let q = query.q.clone().unwrap_or_default();
    query.min_position = Some(head(&state).await?);
    let page_json =
        json_of(catalog::list(state.clone(), caller.principal.clone(), ApiQuery(query)).await)
            .await?;
    let content = html! {
        form.filters method="get" action="/catalog" role="search" {
            div { label for="q" { "Search" } input #q type="search" name="q" value=(q); }
            button type="submit" { "Search" }
        }
        table {
            thead { tr {
                th scope="col" { "Entry" } th scope="col" { "Description" } th scope="col" { "Kind" }
                th scope="col" { "Transport" } th scope="col" { "Tools" }
            } }
            tbody {
                @for entry in items(&page_json) {
                    tr {
                        td { a href={"/catalog/" (text(entry, "id"))} { (text(entry, "name")) } }
                        td { (text(entry, "description")) }
                        td { (text(entry, "kind")) @if entry["published"] == Value::Bool(true) { " (published)" } }
                        td { (text(entry, "transport")) }
                        td { (entry["tools"].as_array().map_or(0, Vec::len)) }
                    }
                }
            }
        }
        (pager("/catalog", &filters, &page_json))
    };
    Ok(page("Catalog", &caller, Section::Catalog, None, content))
}

/// One field of the create form, from one key of the entry's config schema.
fn schema_field(field: &Value) -> Markup {
    let key = text(field, "key");
    let secret = field["secret"] == Value::Bool(true);
    let required = field["required"] == Value::Bool(true);
    let id = format!("field-{key}");
    let name = if secret {
        format!("secrets.{key}")
    } else {
        format!("config.{key}")
    };
    html! {
        div.field {
            label for=(id) {
                code { (key) }
                @if required { " " span.required { "(required)" } }
                @if secret { " " span.muted { "(secret)" } }
            }
            @if secret {
                // Never filled in from anything: a secret is typed, sent, and not shown again.
                input id=(id) type="password" name=(name) required[required] autocomplete="new-password";
            } @else {
                input id=(id) type="text" name=(name) required[required] value=[field["default"].as_str()];
            }
            @if !text(field, "description").is_empty() { small { (text(field, "description")) } }
        }
    }
}

/// `GET /catalog/{id}`.
pub async fn show(
    state: web::Data<AppState>,
    caller: ConsoleCaller,
    id: web::Path<CatalogEntryId>,
) -> Result<Markup, ConsoleError> {
    let read = ReadQuery {
        min_position: Some(head(&state).await?),
    };
    let entry =
        json_of(catalog::get(state.clone(), caller.principal.clone(), id, ApiQuery(read)).await)
            .await?;
    let schema = entry["config_schema"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let content = html! {
        p { (text(&entry, "description")) }
        p.muted { (text(&entry, "kind")) " entry, " (text(&entry, "transport")) " transport, version " (entry["version"]) }
        section aria-labelledby="tools-h" {
            h2 #tools-h { "Tools" }
            ul { @for tool in entry["tools"].as_array().into_iter().flatten() {
                li { code { (text(tool, "name")) } " " span.muted { (text(tool, "description")) } }
            } }
        }
        @if caller.principal.role >= Role::Operator {
            section aria-labelledby="create-h" {
                h2 #create-h { "Create a server" }
                form #create-server hx-post="/api/v1/servers" hx-ext="berth-json" hx-swap="none"
                    data-then-go="/servers/{id}" {
                    div.problem role="alert" {}
                    input type="hidden" name="catalog_id" value=(text(&entry, "id"));
                    div.field {
                        label for="server-name" { "Name " span.required { "(required)" } }
                        input #server-name type="text" name="name" required;
                        small { "Letters, digits and dashes; it names the server's tools at the gateway." }
                    }
                    @for field in &schema { (schema_field(field)) }
                    button.primary type="submit" { "Create server" }
                }
            }
        }
    };
    Ok(page(
        text(&entry, "name"),
        &caller,
        Section::Catalog,
        None,
        content,
    ))
}
