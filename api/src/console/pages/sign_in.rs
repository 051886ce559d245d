//! `GET|POST /sign-in` and `POST /sign-out`: an API key exchanged for a session cookie,
//! and the cookie given back.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use maud::{html, Markup};
use serde::Deserialize;

use crate::console::layout::bare_page;
use crate::console::query::ConsoleQuery;

use crate::http::auth::{CommandContext, Refusal};
use crate::http::problem::ApiError;
use crate::http::routes::identity::settled;
use crate::http::session::{self, removal_cookie, Session};
use crate::http::state::AppState;

/// Query of `GET /sign-in`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInQuery {
    /// The console page to go to once signed in.
    next: Option<String>,
    /// Set when the live stream ended the session.
    ended: Option<String>,
}

/// The form of `POST /sign-in`.
#[derive(Debug, Deserialize)]
pub struct SignInForm {
    key: String,
    #[serde(default)]
    next: String,
}

/// The form of `POST /sign-out`.
#[derive(Debug, Deserialize)]
pub struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

/// Only a path on this site, of plain URL characters: `//host`, `/\host`, `https://…`
/// or a path with a tab or newline (which browsers drop, making `/\t/host` into
/// `//host`) would send the user elsewhere.
fn local_path(next: Option<&str>) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/-._~%?=&+,:;@!$'()*".contains(c);
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && p.chars().all(plain) => {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn form(next: &str, message: Option<&str>) -> Markup {
    bare_page(
        "Sign in to Berth",
        html! {
            @if let Some(message) = message {
                p.problem role="alert" { (message) }
            }
            form method="post" action="/sign-in" {
                input type="hidden" name="next" value=(next);
                div.field {
                    label for="key" { "API key" }
                    input #key type="password" name="key" required autocomplete="off" autofocus;
                    small { "The key `berth serve` printed at its first start, or one made with `berth users keys create`." }
                }
                button.primary type="submit" { "Sign in" }
            }
        },
    )
}

fn html_response(status: actix_web::http::StatusCode, page: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(page.into_string())
}

/// Whether Berth was reached over TLS (then the cookie is `Secure`).
fn over_tls(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

/// `GET /sign-in`.
pub async fn page(ConsoleQuery(query): ConsoleQuery<SignInQuery>) -> HttpResponse {
    let message = query
        .ended
        .is_some()
        .then_some("Your session ended: its key was revoked, or its user disabled.");
    html_response(
        actix_web::http::StatusCode::OK,
        form(&local_path(query.next.as_deref()), message),
    )
}

/// `POST /sign-in`: checks the key as the API would, records the session (refused, like
/// a token, if the key stopped working meanwhile), then sets the session cookie once
/// authentication can see the session.
pub async fn sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let auth = &state.auth;
    if session::foreign(req.headers(), req.connection_info().host()) {
        return Err(ApiError::Forbidden("sign in from Berth's own page".into()));
    }
    let form: SignInForm = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::bad_field("key", format!("the sign-in form is malformed: {e}")))?;
    let next = local_path(Some(&form.next));
    let principal = match auth.api_key(form.key.trim()).await {
        Ok(principal) => principal,
        Err(Refusal::Denied(reason)) => {
            tracing::info!(reason, "console sign-in refused");
            return Ok(html_response(
                actix_web::http::StatusCode::UNAUTHORIZED,
                form_page_for(&next, reason),
            ));
        }
        Err(Refusal::Unavailable(e)) => return Err(e),
    };
    if !principal.profiles.is_empty() {
        return Ok(html_response(
            actix_web::http::StatusCode::FORBIDDEN,
            form_page_for(
                &next,
                "this key is limited to MCP gateway profiles; sign in with a key of your own",
            ),
        ));
    }
    let session = Session::begin(principal.credential.key_id(), Utc::now());
    let receipt = state
        .bus
        .record_console_session_opened(
            principal.user_id.into(),
            session.key_id,
            session.id,
            session.expires_at,
            &CommandContext::of(&req, &principal).0,
        )
        .await?;
    settled(&state, receipt).await?;
    tracing::info!(user = %principal.name, session = %session.id, "console session opened");
    Ok(HttpResponse::SeeOther()
        .cookie(session.cookie(auth.keys(), over_tls(&req)))
        .insert_header((header::LOCATION, next))
        .finish())
}

fn form_page_for(next: &str, reason: &str) -> Markup {
    form(next, Some(&format!("Not signed in: {reason}.")))
}

/// `POST /sign-out`: records that the session ended (its cookie stops working on every
/// Berth of the database, even if kept) and removes the cookie.
pub async fn sign_out(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let auth = &state.auth;
    let form: SignOutForm = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::bad_field("csrf", format!("the sign-out form is malformed: {e}")))?;
    if let Some(session) = req
        .cookie(session::COOKIE)
        .and_then(|c| auth.open_session(c.value()))
    {
        let foreign = session::foreign(req.headers(), req.connection_info().host());
        if foreign || !session.csrf_matches(auth.keys(), &form.csrf) {
            return Err(ApiError::Forbidden(session::CSRF_REFUSED.into()));
        }
        // A session whose key or user no longer works has ended already.
        if let Ok(principal) = auth.session(&session).await {
            let receipt = state
                .bus
                .record_console_session_ended(
                    principal.user_id.into(),
                    session.id,
                    &CommandContext::of(&req, &principal).0,
                )
                .await?;
            settled(&state, receipt).await?;
            tracing::info!(session = %session.id, "console session signed out");
        }
    }
    Ok(HttpResponse::SeeOther()
        .cookie(removal_cookie(over_tls(&req)))
        .insert_header((header::LOCATION, "/sign-in"))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn next_stays_on_the_site() {
        assert_eq!(
            local_path(Some("/servers?state=running")),
            "/servers?state=running"
        );
        for away in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "https://evil.example",
            "evil.example",
            "",
        ] {
            assert_eq!(local_path(Some(away)), "/", "{away:?}");
        }
        assert_eq!(local_path(None), "/");
    }
}
