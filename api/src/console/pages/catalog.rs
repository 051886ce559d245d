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
                        option value="openapi" { "openapi: an HTTP API, from its OpenAPI document (transport stdio)" }
                        option value="remote" { "remote: an MCP server someone else runs (transport http)" }
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
                legend { "Registered API (openapi)" }
                div.field { label for="entry-document-url" { "Document URL (fetched once, and kept)" }
                    input #entry-document-url type="url" name="document_url" placeholder="https://api.example.com/openapi.json"; }
                div.field { label for="entry-document" { "Or the document itself (JSON or YAML)" }
                    textarea #entry-document name="document" rows="4" {} }
                div.field { label for="entry-base-url" { "Base URL of its requests" }
                    input #entry-base-url type="url" name="base_url" placeholder="https://api.example.com/v1"; }
                div.field { label for="entry-health-path" { "Health path (default /)" }
                    input #entry-health-path type="text" name="health_path" placeholder="/health"; }
                div.field { label for="entry-operations" { "Operations offered (operationId or METHOD /path, one per line; empty: every GET)" }
                    textarea #entry-operations name="operations" rows="3" {} }
            }
            fieldset {
                legend { "Remote server (remote)" }
                div.field { label for="entry-remote-url" { "Its MCP address" }
                    input #entry-remote-url type="url" name="remote_url" placeholder="https://mcp.example.com/mcp"; }
            }
            fieldset {
                legend { "Credential of a registered API or remote server" }
                div.row {
                    div { label for="entry-auth-type" { "Sent as" }
                        select #entry-auth-type name="auth_type" {
                            option value="none" { "none" }
                            option value="header" { "a header" }
                            option value="query" { "a query parameter (registered APIs)" }
                            option value="bearer" { "Authorization: Bearer" }
                            option value="basic" { "Authorization: Basic" }
                        } }
                    div { label for="entry-auth-name" { "Header or parameter name" }
                        input #entry-auth-name type="text" name="auth_name" placeholder="X-API-Key"; }
                }
                div.row {
                    div { label for="entry-auth-secret" { "Secret key holding it (a secret key below)" }
                        input #entry-auth-secret type="text" name="auth_secret" placeholder="API_KEY"; }
                    div { label for="entry-auth-username" { "Key holding the user name (basic)" }
                        input #entry-auth-username type="text" name="auth_username"; }
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
    let raw = |name: &str| filter_value(form, name).unwrap_or_default();
    let field = |name: &str| raw(name).trim().to_owned();
    let lines = |name: &str| -> Vec<String> {
        field(name)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let auth = match field("auth_type").as_str() {
        kind @ ("header" | "query") => {
            json!({"type": kind, "name": field("auth_name"), "secret": field("auth_secret")})
        }
        "bearer" => json!({"type": "bearer", "secret": field("auth_secret")}),
        "basic" => {
            json!({"type": "basic", "username": field("auth_username"), "password": field("auth_secret")})
        }
        _ => json!({"type": "none"}),
    };
    let runtime = match field("runtime").as_str() {
        "process" => json!({"type": "process", "command": field("program"), "args": lines("args")}),
        "openapi" => {
            let mut api = json!({"type": "openapi", "base_url": field("base_url"), "auth": auth,
                                 "operations": lines("operations")});
            // Given both or neither, the API says which to give. A pasted YAML document
            // keeps its indentation.
            for (name, value) in [
                ("document_url", field("document_url")),
                ("document", raw("document")),
            ] {
                if !value.trim().is_empty() {
                    api[name] = json!(value);
                }
            }
            let health = field("health_path");
            if !health.is_empty() {
                api["health_path"] = json!(health);
            }
            api
        }
        "remote" => json!({"type": "remote", "url": field("remote_url"), "auth": auth}),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_register_form_describes_registered_apis_and_remote_servers() {
        let api = entry_body(&form(&[
            ("name", "pets"),
            ("transport", "stdio"),
            ("runtime", "openapi"),
            ("document_url", "https://api.example/openapi.json"),
            ("document", ""),
            ("base_url", "https://api.example"),
            ("health_path", "/health"),
            ("operations", "getPet\n\nGET /pets\n"),
            ("auth_type", "header"),
            ("auth_name", "X-Key"),
            ("auth_secret", "PETS_KEY"),
            ("key_0", "PETS_KEY"),
            ("secret_0", "on"),
        ]));
        let runtime = &api["runtime"];
        assert_eq!(runtime["type"], "openapi");
        assert_eq!(runtime["document_url"], "https://api.example/openapi.json");
        assert_eq!(runtime.get("document"), None, "{runtime}");
        assert_eq!(runtime["operations"], json!(["getPet", "GET /pets"]));
        assert_eq!(runtime["health_path"], "/health");
        assert_eq!(
            runtime["auth"],
            json!({"type": "header", "name": "X-Key", "secret": "PETS_KEY"})
        );
        assert_eq!(api["config_schema"][0]["secret"], true);

        let remote = entry_body(&form(&[
            ("name", "far"),
            ("transport", "http"),
            ("runtime", "remote"),
            ("remote_url", "https://mcp.example/mcp"),
            ("auth_type", "bearer"),
            ("auth_secret", "TOKEN"),
        ]));
        assert_eq!(
            remote["runtime"],
            json!({"type": "remote", "url": "https://mcp.example/mcp",
                   "auth": {"type": "bearer", "secret": "TOKEN"}})
        );
        let yaml = "  openapi: 3.1.0\n  info: {title: t, version: '1'}\n";
        let pasted = entry_body(&form(&[("runtime", "openapi"), ("document", yaml)]));
        assert_eq!(
            pasted["runtime"]["document"], yaml,
            "its indentation is kept"
        );
        let basic = entry_body(&form(&[
            ("runtime", "remote"),
            ("auth_type", "basic"),
            ("auth_username", "USER"),
            ("auth_secret", "PASSWORD"),
        ]));
        assert_eq!(
            basic["runtime"]["auth"],
            json!({"type": "basic", "username": "USER", "password": "PASSWORD"})
        );
    }
}
