//! The frame every console page shares: the head with the vendored scripts, the
//! navigation, the live connection to the event stream, and the place problems show.

use berth_domain::user::Role;
use maud::{html, Markup, DOCTYPE};

use crate::console::caller::ConsoleCaller;
use crate::http::problem::ApiError;

/// A section of the console, as the navigation names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `/servers`.
    Servers,
    /// `/catalog`.
    Catalog,
    /// `/gateway`.
    Gateway,
    /// `/audit`.
    Audit,
    /// `/events`.
    Events,
    /// `/users` (administrators).
    Users,
}

impl Section {
    const ALL: [Section; 6] = [
        Self::Servers,
        Self::Catalog,
        Self::Gateway,
        Self::Audit,
        Self::Events,
        Self::Users,
    ];

    fn path(self) -> &'static str {
        match self {
            Self::Servers => "/servers",
            Self::Catalog => "/catalog",
            Self::Gateway => "/gateway",
            Self::Audit => "/audit",
            Self::Events => "/events",
            Self::Users => "/users",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Servers => "Servers",
            Self::Catalog => "Catalog",
            Self::Gateway => "Gateway",
            Self::Audit => "Audit",
            Self::Events => "Events",
            Self::Users => "Users",
        }
    }
}

/// What a page asks of the live stream: the position its content was read at (the
/// stream starts after it, so nothing between the read and the connection is missed)
/// and the kinds of updates it shows.
#[derive(Debug, Clone)]
pub struct Live {
    /// The global position the page was read at.
    pub after: i64,
    /// `servers`, `tools`, `bulk`, `events` (comma separated).
    pub topics: &'static str,
    /// Filters of the events sent (`aggregate_type`, `event_type`).
    pub filters: Vec<(&'static str, String)>,
}

impl Live {
    /// Updates of `topics` after position `after`.
    pub fn after(after: i64, topics: &'static str) -> Self {
        Self {
            after,
            topics,
            filters: Vec::new(),
        }
    }

    fn url(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("after", &self.after.to_string());
        query.append_pair("topics", self.topics);
        for (name, value) in &self.filters {
            query.append_pair(name, value);
        }
        format!("/console/live?{}", query.finish())
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            // No inline styles: the content security policy allows only Berth's own.
            meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
            title { (title) " · Berth" }
            link rel="stylesheet" href="/assets/console.css";
            script src="/assets/htmx.min.js" defer {}
            script src="/assets/sse.js" defer {}
            script src="/assets/console.js" defer {}
        }
    }
}

/// A whole page for `caller` in `section`.
pub fn page(
    title: &str,
    caller: &ConsoleCaller,
    section: Section,
    live: Option<Live>,
    content: Markup,
) -> Markup {
    let principal = &caller.principal;
    let csrf_headers = serde_json::json!({ "X-CSRF-Token": caller.csrf }).to_string();
    let sse = live.map(|l| l.url());
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body hx-headers=(csrf_headers) hx-ext=[sse.as_ref().map(|_| "sse")] sse-connect=[sse] {
                a.skip href="#main" { "Skip to content" }
                header {
                    nav aria-label="Sections" {
                        a.brand href="/" { "Berth" }
                        ul {
                            @for s in Section::ALL {
                                @if s != Section::Users || principal.role == Role::Admin {
                                    li {
                                        a href=(s.path()) aria-current=[(s == section).then_some("page")] { (s.label()) }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        span { (principal.name) " (" (principal.role) ")" }
                        form method="post" action="/sign-out" {
                            input type="hidden" name="csrf" value=(caller.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    div #problem .problem role="alert" aria-live="assertive" {}
                    (content)
                }
                // A revoked key or a disabled user ends the session: the live stream says so.
                div #session-end hidden sse-swap="signed-out" {}
            }
        }
    }
}

/// The sign-in page (no session yet).
pub fn bare_page(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                main #main .narrow {
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
}

/// The page of a request the API refused (or a page that does not exist).
pub fn error_page(error: &ApiError) -> Markup {
    let status = actix_web::ResponseError::status_code(error);
    bare_page(
        status.canonical_reason().unwrap_or("Error"),
        html! {
            @let problem = error.problem();
            p.problem role="alert" { (problem.detail) }
            @if !problem.errors.is_empty() {
                ul { @for f in &problem.errors { li { code { (f.field) } ": " (f.message) } } }
            }
            p { a href="/" { "Back to the console" } }
        },
    )
}

/// A state as text and colour both (the colour is never the only sign).
pub fn state_badge(state: &str) -> Markup {
    html! { span class={"badge state-" (state)} { (state) } }
}

/// JSON, pretty, for reading.
pub fn json_block(value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    html! { pre.json { (text) } }
}
