//! Console sessions: a browser signs in with an API key once and then holds a cookie
//! naming the session, the key and the expiry, sealed with the session MAC. Signing in
//! and out are events on the user's stream (`ConsoleSessionOpened`, `…Ended`), so the
//! identity read model knows every session. The cookie is another credential of the
//! key's user: every request checks the session, the key and its user again (signed
//! out, revoked, disabled, expired), so what ends the key ends its sessions.
//!
//! Requests that change something (any method but GET and HEAD) must also carry the
//! session's CSRF token (a MAC of the session id, in the `X-CSRF-Token` header or a
//! form's `csrf` field), and an `Origin`, when sent, must be Berth's own.

use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use berth_infrastructure::credentials::CredentialKeys;
use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

/// The session cookie's name.
pub const COOKIE: &str = "berth_session";

/// The header htmx sends the CSRF token in.
pub const CSRF_HEADER: &str = "X-CSRF-Token";

/// How long a session lasts after sign-in (less if its key expires sooner).
pub const LIFETIME: chrono::Duration = chrono::Duration::hours(12);

/// A console session, as its cookie says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// The session's own id (a sign-out ends this one only).
    pub id: Uuid,
    /// The API key the session was opened with.
    pub key_id: Uuid,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
}

impl Session {
    /// A new session for `key_id`, ending after [`LIFETIME`] (or sooner: every request
    /// checks the key, its expiry included).
    pub fn begin(key_id: Uuid, now: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::new_v4(),
            key_id,
            expires_at: now + LIFETIME,
        }
    }

    fn body(&self) -> String {
        format!(
            "{}.{}.{}",
            self.id,
            self.key_id,
            self.expires_at.timestamp()
        )
    }

    /// The cookie value: `<session id>.<key id>.<expiry>.<MAC>`.
    pub fn seal(&self, keys: &CredentialKeys) -> String {
        let body = self.body();
        let mac = keys.session_mac(&body);
        format!("{body}.{mac}")
    }

    /// The session `value` seals, if its MAC holds and it has not expired at `now`.
    pub fn open(value: &str, keys: &CredentialKeys, now: DateTime<Utc>) -> Option<Self> {
        let (body, mac) = value.rsplit_once('.')?;
        if !constant_time_eq(keys.session_mac(body).as_bytes(), mac.as_bytes()) {
            return None;
        }
        let mut parts = body.split('.');
        let id = parts.next()?.parse().ok()?;
        let key_id = parts.next()?.parse().ok()?;
        let expires_at = Utc.timestamp_opt(parts.next()?.parse().ok()?, 0).single()?;
        if parts.next().is_some() || expires_at <= now {
            return None;
        }
        Some(Self {
            id,
            key_id,
            expires_at,
        })
    }

    /// The token forms and htmx requests of this session must send back.
    pub fn csrf_token(&self, keys: &CredentialKeys) -> String {
        keys.session_mac(&format!("csrf:{}", self.id))
    }

    /// Whether `presented` is this session's CSRF token.
    pub fn csrf_matches(&self, keys: &CredentialKeys, presented: &str) -> bool {
        constant_time_eq(self.csrf_token(keys).as_bytes(), presented.as_bytes())
    }

    /// The cookie that carries the session: `HttpOnly`, `SameSite=Strict`, for the whole
    /// site, `Secure` when Berth is served over TLS.
    pub fn cookie(&self, keys: &CredentialKeys, secure: bool) -> Cookie<'static> {
        let max_age = (self.expires_at - Utc::now()).num_seconds().max(0);
        Cookie::build(COOKIE, self.seal(keys))
            .path("/")
            .http_only(true)
            .secure(secure)
            .same_site(SameSite::Strict)
            .max_age(time::Duration::seconds(max_age))
            .finish()
    }
}

/// The cookie that removes the session cookie from the browser.
pub fn removal_cookie(secure: bool) -> Cookie<'static> {
    let mut cookie = Cookie::build(COOKIE, "")
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .finish();
    cookie.make_removal();
    cookie
}

/// Whether a request with `method` changes something, and so needs the CSRF token.
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Why a request that changes something was refused before it reached its handler.
pub const CSRF_REFUSED: &str =
    "a console request that changes something needs its session's CSRF token (X-CSRF-Token)";

/// Why a request with the session cookie from another origin was refused.
pub const FOREIGN_REFUSED: &str =
    "the console's session cookie works only on Berth's own pages (this request came from another origin)";

/// Whether a request with `headers`, sent to `host` (as the client named it, or the
/// proxy in front of Berth), came from a page of another origin: its `Origin` names
/// another host, or the browser says (`Sec-Fetch-Site`) it was not sent by Berth's own
/// page or typed in. The cookie alone cannot tell: `SameSite=Strict` still sends it from
/// another port of the same host, and a WebSocket is not held back by CORS. Top-level
/// navigations are let through (nothing the page does can read their answer).
pub fn foreign(headers: &HeaderMap, host: &str) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(origin) = text(header::ORIGIN.as_str()) {
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or(origin);
        if !origin_host.eq_ignore_ascii_case(host) {
            return true;
        }
    }
    let navigation = text("sec-fetch-mode") == Some("navigate");
    match text("sec-fetch-site") {
        None | Some("same-origin") | Some("none") => false,
        Some(_) => !navigation,
    }
}

/// Compares every byte whatever the first difference, so timing tells nothing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> CredentialKeys {
        CredentialKeys::from_secret(&[9; 32])
    }

    #[test]
    fn a_sealed_session_opens_and_a_changed_one_does_not() {
        let now = Utc::now();
        let session = Session::begin(Uuid::new_v4(), now);
        let sealed = session.seal(&keys());
        let opened = Session::open(&sealed, &keys(), now).expect("opens");
        assert_eq!(opened.id, session.id);
        assert_eq!(opened.key_id, session.key_id);

        // Another key id under the same MAC.
        let forged = sealed.replacen(&session.key_id.to_string(), &Uuid::new_v4().to_string(), 1);
        assert_eq!(Session::open(&forged, &keys(), now), None);
        // Another installation's keys.
        let other = CredentialKeys::from_secret(&[8; 32]);
        assert_eq!(Session::open(&sealed, &other, now), None);
        assert_eq!(Session::open("garbage", &keys(), now), None);
    }

    #[test]
    fn a_session_ends_after_its_lifetime() {
        let now = Utc::now();
        let session = Session::begin(Uuid::new_v4(), now);
        let sealed = session.seal(&keys());
        assert!(Session::open(
            &sealed,
            &keys(),
            now + LIFETIME - chrono::Duration::seconds(1)
        )
        .is_some());
        assert!(Session::open(&sealed, &keys(), now + LIFETIME).is_none());
    }

    #[test]
    fn the_csrf_token_belongs_to_one_session() {
        let now = Utc::now();
        let a = Session::begin(Uuid::new_v4(), now);
        let b = Session::begin(a.key_id, now);
        assert!(a.csrf_matches(&keys(), &a.csrf_token(&keys())));
        assert!(!a.csrf_matches(&keys(), &b.csrf_token(&keys())));
        assert!(!a.csrf_matches(&keys(), ""));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(
                header::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        headers
    }

    #[test]
    fn only_berths_own_pages_and_navigations_are_not_foreign() {
        let host = "127.0.0.1:8080";
        assert!(!foreign(&headers(&[]), host));
        assert!(!foreign(
            &headers(&[("origin", "http://127.0.0.1:8080")]),
            host
        ));
        assert!(foreign(
            &headers(&[("origin", "http://evil.example")]),
            host
        ));
        assert!(foreign(
            &headers(&[("origin", "http://127.0.0.1:3000")]),
            host
        ));
        assert!(!foreign(
            &headers(&[("sec-fetch-site", "same-origin")]),
            host
        ));
        assert!(!foreign(&headers(&[("sec-fetch-site", "none")]), host));
        assert!(foreign(&headers(&[("sec-fetch-site", "same-site")]), host));
        assert!(foreign(
            &headers(&[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "websocket")
            ]),
            host
        ));
        assert!(!foreign(
            &headers(&[
                ("sec-fetch-site", "same-site"),
                ("sec-fetch-mode", "navigate")
            ]),
            host
        ));
    }
}
