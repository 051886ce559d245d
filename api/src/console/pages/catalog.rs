//! `GET /catalog` and `GET /catalog/{id}`: entries the caller may see, their tools and
//! config schema, and a form, generated from the schema, that creates a server.

use actix_web::{web, HttpRequest, HttpResponse};
use berth_domain::user::Role;
use berth_domain::CatalogEntryId;
use maud::{html, Markup};
use serde_json::{json, Value};

use crate::console::answer::{head, items, json_of, text};
use crate::console::caller::{ConsoleCaller, ConsoleError};
use crate::console::layout::{page, Section};
use crate::console::pages::servers::pager;
use crate::console::query::{filter_value, filters_of, ConsoleQuery};
use crate::http::extract::{parse_json, ApiQuery, JsonBody};
use crate::http::problem::ApiError;
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
    let chosen = |name: &str| filter_value(&filters, name).unwrap_or_default();
    let (kind, transport) = (chosen("kind"), chosen("transport"));
    query.min_position = Some(head(&state).await?);
    let page_json =
        json_of(catalog::list(state.clone(), caller.principal.clone(), ApiQuery(query)).await)
            .await?;
    let content = html! {
        form.filters method="get" action="/catalog" role="search" {
            div { label for="q" { "Search" } input #q type="search" name="q" value=(q); }
            div {
                label for="kind" { "Kind" }
                select #kind name="kind" {
                    option value="" { "any" }
                    @for k in ["predefined", "custom"] { option value=(k) selected[kind == k] { (k) } }
                }
            }
            div {
                label for="transport" { "Transport" }
                select #transport name="transport" {
                    option value="" { "any" }
                    @for t in ["stdio", "http"] { option value=(t) selected[transport == t] { (t) } }
                }
            }
            button type="submit" { "Search" }
        }
        @if caller.principal.role >= Role::Operator {
            p { a href="/catalog/new" { "Register an entry" } }
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

/// How many config keys the register form offers.
const SCHEMA_ROWS: usize = 6;

/// `GET /catalog/new`: the form that registers an entry.
pub async fn new_entry(caller: ConsoleCaller) -> Result<Markup, ConsoleError> {
    if caller.principal.role < Role::Operator {
        return Err(ApiError::Forbidden(
            "registering a catalog entry needs the operator role".into(),
        )
        .into());
    }
    let admin = caller.principal.role == Role::Admin;
    let content = html! {
        form #register-entry hx-post="/console/catalog" hx-swap="none" data-then-go="/catalog/{id}" {
            div.problem role="alert" {}
            div.field { label for="entry-name" { "Name " span.required { "(required)" } }
                input #entry-name type="text" name="name" required; }
            div.field { label for="entry-description" { "Description" }
                input #entry-description type="text" name="description"; }
            div.row {
                div { label for="entry-transport" { "Transport" }
                    select #entry-transport name="transport" {
                        option value="stdio" { "stdio (standard input and output)" }
                        option value="http" { "http (Streamable HTTP)" }
                    } }
                div { label for="entry-runtime" { "Runtime" }
                    select #entry-runtime name="runtime" {
                        option value="docker" { "docker: a container image" }
                        @if admin { option value="process" { "process: a command on Berth's host (administrators)" } }
                    } }
            }
            fieldset {
                legend { "Docker" }
                div.field { label for="entry-image" { "Image" } input #entry-image type="text" name="image" placeholder="mcp/time"; }
                div.field { label for="entry-container-command" { "Command (one argument per line; empty: the image's own)" }
                    textarea #entry-container-command name="container_command" rows="2" {} }
                div.field { label for="entry-port" { "Port (http servers)" } input #entry-port type="number" name="port" min="1" max="65535"; }
            }
            @if admin {
                fieldset {
                    legend { "Process" }
                    div.field { label for="entry-program" { "Program" } input #entry-program type="text" name="program" placeholder="uvx"; }
                    div.field { label for="entry-args" { "Arguments (one per line)" }
                        textarea #entry-args name="args" rows="3" {} }
                }
            }
            fieldset {
                legend { "Settings each server of it takes" }
                table {
                    thead { tr { th scope="col" { "Key" } th scope="col" { "Description" } th scope="col" { "Default" }
                        th scope="col" { "Required" } th scope="col" { "Secret" } } }
                    tbody { @for i in 0..SCHEMA_ROWS {
                        tr {
                            td { input type="text" name={"key_" (i)} aria-label={"Key " (i + 1)}; }
                            td { input type="text" name={"description_" (i)} aria-label={"Description of key " (i + 1)}; }
                            td { input type="text" name={"default_" (i)} aria-label={"Default of key " (i + 1)}; }
                            td { input type="checkbox" name={"required_" (i)} aria-label={"Key " (i + 1) " is required"}; }
                            td { input type="checkbox" name={"secret_" (i)} aria-label={"Key " (i + 1) " is secret"}; }
                        }
                    } }
                }
            }
            button.primary type="submit" { "Register" }
        }
    };
    Ok(page(
        "Register a catalog entry",
        &caller,
        Section::Catalog,
        None,
        content,
    ))
}

/// The entry the register form describes, as the API's JSON body.
fn entry_body(form: &[(String, String)]) -> Value {
    let field = |name: &str| {
        form.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let lines = |name: &str| -> Vec<String> {
        field(name)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let runtime = match field("runtime").as_str() {
        "process" => json!({"type": "process", "command": field("program"), "args": lines("args")}),
        _ => {
            let mut docker = json!({"type": "docker", "image": field("image"), "command": lines("container_command")});
            let port = field("port");
            if !port.is_empty() {
                // A port that is not a number reaches the API as text and is refused there,
                // with the field named.
                docker["port"] = port.parse::<u64>().map_or(json!(port), |p| json!(p));
            }
            docker
        }
    };
    let schema: Vec<Value> = (0..SCHEMA_ROWS)
        .filter(|i| !field(&format!("key_{i}")).is_empty())
        .map(|i| {
            let mut key = json!({
                "key": field(&format!("key_{i}")),
                "description": field(&format!("description_{i}")),
                "required": !field(&format!("required_{i}")).is_empty(),
                "secret": !field(&format!("secret_{i}")).is_empty(),
            });
            let default = field(&format!("default_{i}"));
            if !default.is_empty() {
                key["default"] = json!(default);
            }
            key
        })
        .collect();
    json!({
        "name": field("name"),
        "description": field("description"),
        "transport": field("transport"),
        "runtime": runtime,
        "config_schema": schema,
    })
}

/// `POST /console/catalog`: the register form, sent to `POST /api/v1/catalog` as its
/// JSON body; answers what the API answers.
pub async fn register(
    state: web::Data<AppState>,
    caller: ConsoleCaller,
    form: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&form)
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    let body = serde_json::to_vec(&entry_body(&pairs)).map_err(ApiError::internal)?;
    catalog::register(state, caller.context, JsonBody(parse_json(&body)?)).await
}
