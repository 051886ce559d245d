//! `GET /users` (administrators): users, their roles, creating, disabling and enabling
//! them; `GET /users/{id}`: a user's API keys, creating one (shown once) and revoking.
//! Every user may open their own keys page.

use actix_web::web;
use berth_domain::user::Role;
use berth_domain::UserId;
use maud::{html, Markup};
use serde_json::Value;

use crate::console::answer::{items, json_of, text};
use crate::console::caller::{ConsoleCaller, ConsoleError};
use crate::console::layout::{page, Section};
use crate::http::extract::ApiQuery;
use crate::http::pagination::PageQuery;
use crate::http::routes::identity;
use crate::http::state::AppState;

fn all() -> ApiQuery<PageQuery> {
    ApiQuery(PageQuery {
        page: None,
        page_size: Some(500),
    })
}

/// `GET /users`.
pub async fn list(
    state: web::Data<AppState>,
    caller: ConsoleCaller,
) -> Result<Markup, ConsoleError> {
    let users =
        json_of(identity::list(state.clone(), caller.principal.clone(), all()).await).await?;
    let content = html! {
        table {
            thead { tr { th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "State" } th scope="col" { "Actions" } } }
            tbody { @for user in items(&users) {
                @let id = text(user, "id");
                @let disabled = user["disabled"] == Value::Bool(true);
                tr {
                    td { a href={"/users/" (id)} { (text(user, "name")) } }
                    td { (text(user, "role")) }
                    td { @if disabled { span.badge.state-failed { "disabled" } } @else { span.badge.state-running { "active" } } }
                    td data-then-reload {
                        @if disabled {
                            button type="button" hx-post={"/api/v1/users/" (id) "/enable"} hx-swap="none" { "Enable" }
                        } @else if id != caller.principal.user_id.to_string() {
                            button.danger type="button" hx-post={"/api/v1/users/" (id) "/disable"} hx-swap="none" { "Disable" }
                        }
                    }
                }
            } }
        }
        section aria-labelledby="new-user-h" {
            h2 #new-user-h { "Add a user" }
            form hx-post="/api/v1/users" hx-ext="berth-json" hx-swap="none" data-then-go="/users/{id}" {
                div.problem role="alert" {}
                div.row {
                    div { label for="user-name" { "Name" } input #user-name type="text" name="name" required; }
                    div { label for="user-role" { "Role" }
                        select #user-role name="role" {
                            option value="viewer" { "viewer" } option value="operator" selected { "operator" } option value="admin" { "admin" }
                        } }
                    button.primary type="submit" { "Add" }
                }
            }
        }
    };
    Ok(page("Users", &caller, Section::Users, None, content))
}

/// `GET /users/{id}`: the user's keys.
pub async fn keys(
    state: web::Data<AppState>,
    caller: ConsoleCaller,
    id: web::Path<UserId>,
) -> Result<Markup, ConsoleError> {
    let id = id.into_inner();
    let keys = json_of(
        identity::list_keys(
            state.clone(),
            caller.principal.clone(),
            web::Path::from(id),
            all(),
        )
        .await,
    )
    .await?;
    let own = caller.principal.user_id == id.uuid();
    let title = if own {
        "Your API keys".to_owned()
    } else {
        format!("API keys of user {id}")
    };
    let section = if caller.principal.role == Role::Admin {
        Section::Users
    } else {
        Section::Gateway
    };
    let content = html! {
        table {
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Prefix" } th scope="col" { "Created" }
                th scope="col" { "Expires" } th scope="col" { "State" } th scope="col" { "Actions" }
            } }
            tbody { @for key in items(&keys) {
                @let revoked = !key["revoked_at"].is_null();
                tr {
                    td { (text(key, "name")) }
                    td { code { (text(key, "prefix")) "…" } }
                    td { (text(key, "created_at")) }
                    td { (key["expires_at"].as_str().unwrap_or("never")) }
                    td { @if revoked { span.badge.state-failed { "revoked" } } @else { span.badge.state-running { "active" } } }
                    td data-then-reload {
                        @if !revoked {
                            button.danger type="button" hx-delete={"/api/v1/keys/" (text(key, "id"))} hx-swap="none"
                                aria-label={"Revoke " (text(key, "name"))} { "Revoke" }
                        }
                    }
                }
            } }
        }
        section aria-labelledby="new-key-h" {
            h2 #new-key-h { "Create a key" }
            form hx-post={"/api/v1/users/" (id) "/keys"} hx-ext="berth-json" hx-swap="none"
                data-show-field="key" data-show-in="#new-key" {
                div.problem role="alert" {}
                div.row {
                    div { label for="key-name" { "Name" } input #key-name type="text" name="name" required; }
                    div { label for="key-expires" { "Expires (RFC 3339, optional)" }
                        input #key-expires type="text" name="expires_at" placeholder="2027-01-01T00:00:00Z"; }
                    button.primary type="submit" { "Create" }
                }
            }
            div hidden {
                p { strong { "Copy the key now: it is not shown again." } }
                p #new-key .secret-once {}
                button type="button" data-copy="#new-key" { "Copy" }
            }
        }
    };
    Ok(page(&title, &caller, section, None, content))
}
