//! The web console at the HTTP level: signing in sets a cookie with the right flags, the
//! cookie is a credential of its key's user with the same rules as the key, every
//! request that changes something needs the session's CSRF token, and no page or asset
//! refers to another host.

mod api_support;

use api_support::{fixture_entry, server_body, tool_names, user, TestApp};
use reqwest::header::{self, HeaderMap};
use reqwest::redirect::Policy;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A browser-like client that follows no redirect and keeps no cookie on its own.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("building a client")
}

/// The `Set-Cookie` header of the session cookie in `headers`.
fn session_set_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("berth_session="))
        .map(str::to_owned)
}

/// Signs in with `key`; answers the `Cookie` header to send, the `Set-Cookie` line and
/// the session's CSRF token (read off a page, as a browser would).
async fn sign_in(app: &TestApp, key: &str, extra: &[(&str, &str)]) -> (String, String, String) {
    let mut request = client()
        .post(app.url("/sign-in"))
        .form(&[("key", key), ("next", "/servers")]);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let answer = request.send().await.expect("sign-in answers");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        answer
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok()),
        Some("/servers")
    );
    let set_cookie = session_set_cookie(answer.headers()).expect("a session cookie is set");
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();
    let page = page(app, &cookie, "/servers").await;
    assert_eq!(page.0, StatusCode::OK, "{}", page.1);
    let csrf = csrf_of(&page.1);
    (cookie, set_cookie, csrf)
}

/// The CSRF token a page gives htmx (`hx-headers` on its body).
fn csrf_of(html: &str) -> String {
    let start = html
        .find("X-CSRF-Token&quot;:&quot;")
        .unwrap_or_else(|| panic!("no CSRF token in the page: {html}"))
        + "X-CSRF-Token&quot;:&quot;".len();
    html[start..]
        .split("&quot;")
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn page(app: &TestApp, cookie: &str, path: &str) -> (StatusCode, String, HeaderMap) {
    let answer = client()
        .get(app.url(path))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .expect("the console answers");
    let status = answer.status();
    let headers = answer.headers().clone();
    (status, answer.text().await.unwrap_or_default(), headers)
}

/// An API request with the session cookie (and `csrf`, when given, as the header).
async fn api_with_cookie(
    app: &TestApp,
    cookie: &str,
    method: Method,
    path: &str,
    csrf: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut request = client()
        .request(method, app.url(path))
        .header(header::COOKIE, cookie);
    if let Some(token) = csrf {
        request = request.header("X-CSRF-Token", token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let answer = request.send().await.expect("the API answers");
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_and_a_bad_key_sets_none() {
    let app = TestApp::spawn().await;

    let (_, set_cookie, _) = sign_in(&app, app.token(), &[]).await;
    let flags: Vec<String> = set_cookie
        .split(';')
        .skip(1)
        .map(|f| f.trim().to_ascii_lowercase())
        .collect();
    assert!(flags.contains(&"httponly".into()), "{set_cookie}");
    assert!(flags.contains(&"samesite=strict".into()), "{set_cookie}");
    assert!(flags.contains(&"path=/".into()), "{set_cookie}");
    assert!(
        flags.iter().any(|f| f.starts_with("max-age=")),
        "the session expires: {set_cookie}"
    );
    // Served over plain HTTP, the cookie cannot be `Secure` (the browser would drop it).
    assert!(!flags.contains(&"secure".into()), "{set_cookie}");

    // Behind a proxy that terminates TLS, it is.
    let (_, set_cookie, _) = sign_in(&app, app.token(), &[("X-Forwarded-Proto", "https")]).await;
    assert!(
        set_cookie.to_ascii_lowercase().contains("; secure"),
        "{set_cookie}"
    );

    // A wrong key: the form again, with the reason, and no cookie.
    let answer = client()
        .post(app.url("/sign-in"))
        .form(&[("key", "berth_notakey"), ("next", "/servers")])
        .send()
        .await
        .expect("sign-in answers");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert!(session_set_cookie(answer.headers()).is_none());
    assert!(answer
        .text()
        .await
        .unwrap_or_default()
        .contains("Not signed in"));

    // `next` never leads off the site, however it is dressed (browsers drop tabs and
    // newlines from a URL, so `/\t/evil.example` is `//evil.example` to them).
    for next in [
        "//evil.example/x",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\\evil.example",
        "https://evil.example",
    ] {
        let answer = client()
            .post(app.url("/sign-in"))
            .form(&[("key", app.token()), ("next", next)])
            .send()
            .await
            .expect("sign-in answers");
        assert_eq!(answer.status(), StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(
            answer
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok()),
            Some("/"),
            "{next:?}"
        );
    }

    // A page without a session sends the browser to sign in, and comes back after.
    let (status, _, headers) = page(&app, "", "/servers?state=running").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers.get(header::LOCATION).and_then(|v| v.to_str().ok()),
        Some("/sign-in?next=%2Fservers%3Fstate%3Drunning")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_change_without_the_csrf_token_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let entry = app.register(&fixture_entry("console-csrf")).await;
    let (cookie, _, csrf) = sign_in(&app, app.token(), &[]).await;
    let body = server_body(&entry, "by-cookie", "s3cret-token");

    let before = app.head().await;
    for token in [None, Some("0".repeat(64)), Some(String::new())] {
        let (status, problem) = api_with_cookie(
            &app,
            &cookie,
            Method::POST,
            "/api/v1/servers",
            token.as_deref(),
            Some(&body),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("CSRF"),
            "{problem}"
        );
    }
    // The right token from another origin is refused too.
    let answer = client()
        .post(app.url("/api/v1/servers"))
        .header(header::COOKIE, &cookie)
        .header("X-CSRF-Token", &csrf)
        .header(header::ORIGIN, "http://evil.example")
        .json(&body)
        .send()
        .await
        .expect("the API answers");
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.head().await, before, "a refused request wrote an event");

    // Reading with the cookie from another origin is refused too: a page on another
    // port of the same host is the same *site* to the browser, which then sends a
    // SameSite=Strict cookie, and a WebSocket is not held back by CORS.
    for path in ["/api/v1/me", "/api/v1/events/ws", "/api/v1/events/stream"] {
        let answer = client()
            .get(app.url(path))
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, "http://127.0.0.1:1")
            .send()
            .await
            .expect("the API answers");
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{path}");
        let answer = client()
            .get(app.url(path))
            .header(header::COOKIE, &cookie)
            .header("Sec-Fetch-Site", "same-site")
            .send()
            .await
            .expect("the API answers");
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let answer = client()
        .get(app.url("/api/v1/me"))
        .header(header::COOKIE, &cookie)
        .header("Sec-Fetch-Site", "same-origin")
        .send()
        .await
        .expect("the API answers");
    assert_eq!(answer.status(), StatusCode::OK);

    // With the token, from Berth's own page: created, as the cookie's user.
    let (status, created) = api_with_cookie(
        &app,
        &cookie,
        Method::POST,
        "/api/v1/servers",
        Some(&csrf),
        Some(&body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let (status, server) = api_with_cookie(
        &app,
        &cookie,
        Method::GET,
        &format!("/api/v1/servers/{id}?min_position={}", created["position"]),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server["owner"], "user:admin");
    // The cookie's credential says what it is.
    let (_, me) = api_with_cookie(&app, &cookie, Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(me["credential"], "console_session", "{me}");

    // The console's own form posts need the token too.
    let answer = client()
        .post(app.url(&format!("/console/servers/{id}/test")))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .expect("the console answers");
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    let answer = client()
        .post(app.url("/sign-out"))
        .header(header::COOKIE, &cookie)
        .form(&[("csrf", "wrong")])
        .send()
        .await
        .expect("the console answers");
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn the_session_ends_with_sign_out_with_its_key_and_with_its_user() {
    let mut app = TestApp::spawn().await;
    let ann = user(&app, "ann", "operator").await;

    // Signed out: the same cookie, kept, no longer works, and what it had open closes.
    let (cookie, _, csrf) = sign_in(&app, &ann.key, &[]).await;
    let mut stream = client()
        .get(app.url(&format!("/api/v1/events/stream?after={}", app.head().await)))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(stream.status(), StatusCode::OK);
    let answer = client()
        .post(app.url("/sign-out"))
        .header(header::COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("the console answers");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let removal = session_set_cookie(answer.headers()).expect("the cookie is removed");
    assert!(
        removal.contains("Max-Age=0") || removal.contains("Expires="),
        "{removal}"
    );
    let (status, _) = api_with_cookie(&app, &cookie, Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut said = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !said.contains("event: revoked") {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("the stream stayed open after sign-out: {said}"))
            .expect("reading the stream");
        match chunk {
            Some(bytes) => said.push_str(&String::from_utf8_lossy(&bytes)),
            None => break,
        }
    }
    assert!(said.contains("signed out"), "{said}");
    // Signing in and out are in the audit trail, as the user's own acts.
    let audit = app.get("/api/v1/audit?actor=user:ann").await.json();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"user.console_session_opened"),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"user.console_session_ended"),
        "{actions:?}"
    );
    // And the sign-out holds after a restart (it is in the log, not in memory).
    app.restart().await;
    let (status, _) = api_with_cookie(&app, &cookie, Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The key revoked: the session ends at its next request.
    let (cookie, _, _) = sign_in(&app, &ann.key, &[]).await;
    let (status, _) = api_with_cookie(&app, &cookie, Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(status, StatusCode::OK);
    app.send(
        Method::DELETE,
        &format!("/api/v1/keys/{}", ann.key_id),
        None,
        None,
        &[],
    )
    .await
    .expect(202);
    let (status, _) = api_with_cookie(&app, &cookie, Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, headers) = page(&app, &cookie, "/servers").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .starts_with("/sign-in"));

    // The user disabled: the same.
    let bob = user(&app, "bob", "viewer").await;
    let (cookie, _, _) = sign_in(&app, &bob.key, &[]).await;
    app.command(&format!("/api/v1/users/{}/disable", bob.id))
        .await
        .expect(202);
    let (status, _) = api_with_cookie(&app, &cookie, Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A forged cookie (another key id under the same MAC) is no session at all.
    let (cookie, _, _) = sign_in(&app, app.token(), &[]).await;
    let forged = {
        let value = cookie.trim_start_matches("berth_session=");
        let mut parts: Vec<String> = value.split('.').map(str::to_owned).collect();
        parts[1] = api_support::uuid();
        format!("berth_session={}", parts.join("."))
    };
    let (status, _) = api_with_cookie(&app, &forged, Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn a_viewer_session_is_refused_what_the_viewer_key_is() {
    let app = TestApp::spawn().await;
    let entry = app.register(&fixture_entry("console-viewer")).await;
    // Published, so she sees it (and its create form would show, were she an operator).
    app.command(&format!("/api/v1/catalog/{entry}/publish"))
        .await
        .expect(202);
    let viewer = user(&app, "vera", "viewer").await;
    let (cookie, _, csrf) = sign_in(&app, &viewer.key, &[]).await;

    let body = server_body(&entry, "not-hers", "t0ken");
    let (status, problem) = api_with_cookie(
        &app,
        &cookie,
        Method::POST,
        "/api/v1/servers",
        Some(&csrf),
        Some(&body),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");

    // No action on any page she can open.
    for path in [
        "/servers",
        &format!("/catalog/{entry}"),
        "/gateway",
        "/audit",
        "/events",
    ] {
        let (status, html, _) = page(&app, &cookie, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        for action in ["hx-post", "hx-delete", "Create server", "Start selected"] {
            assert!(!html.contains(action), "{path} offers {action} to a viewer");
        }
    }
    // The users page is for administrators.
    let (status, _, _) = page(&app, &cookie, "/users").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await;
}

/// Every absolute URL in `text` (scripts and styles must have none).
fn absolute_urls(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for scheme in ["http://", "https://", "//"] {
        for (at, _) in text.match_indices(scheme) {
            // `//` inside `http://` is the same URL; a comment's `//` is followed by a space.
            if scheme == "//"
                && (text[..at].ends_with(':')
                    || !text[at + 2..].starts_with(|c: char| c.is_ascii_alphanumeric()))
            {
                continue;
            }
            found.push(text[at..].chars().take(60).collect());
        }
    }
    found
}

/// The values of the attributes through which a page loads or sends anything.
fn references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in [
        " src=\"",
        " href=\"",
        " action=\"",
        " hx-get=\"",
        " hx-post=\"",
        " hx-delete=\"",
        " sse-connect=\"",
        " data-url=\"",
        " data-then-go=\"",
        " data-then-get=\"",
    ] {
        for (at, _) in html.match_indices(attribute) {
            let value = &html[at + attribute.len()..];
            found.push(value[..value.find('"').unwrap_or(value.len())].to_owned());
        }
    }
    found
}

#[tokio::test]
async fn no_page_or_asset_refers_to_another_host_and_the_first_page_is_small() {
    let app = TestApp::spawn().await;
    let entry = app.register(&fixture_entry("console-pages")).await;
    let created = app
        .post("/api/v1/servers", &server_body(&entry, "paged", "t0ken"))
        .await;
    let server = created.id();
    let (cookie, _, _) = sign_in(&app, app.token(), &[]).await;
    let own = app.url("");

    let mut first_page_bytes = 0;
    let pages = [
        "/servers".to_owned(),
        format!("/servers/{server}"),
        "/catalog".into(),
        format!("/catalog/{entry}"),
        "/gateway".into(),
        "/audit".into(),
        "/events".into(),
        "/users".into(),
        "/events/1".into(),
    ];
    for path in &pages {
        let (status, html, headers) = page(&app, &cookie, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        let policy = headers
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(policy.contains("default-src 'self'"), "{path}: {policy}");
        let refs = references(&html);
        assert!(refs.len() > 5, "{path}: {refs:?}");
        for reference in refs {
            assert!(
                reference.starts_with('/') && !reference.starts_with("//")
                    || reference.starts_with('#'),
                "{path} refers to {reference}"
            );
        }
        for url in absolute_urls(&html) {
            // The gateway page shows Berth's own address; a server's config is text.
            assert!(
                url.starts_with(&own) || url.starts_with("https://example.test"),
                "{path} mentions {url}"
            );
        }
        if path == "/servers" {
            first_page_bytes += html.len();
        }
    }
    let sign_in_page = client()
        .get(app.url("/sign-in"))
        .send()
        .await
        .expect("sign-in answers")
        .text()
        .await
        .unwrap_or_default();
    assert!(absolute_urls(&sign_in_page).is_empty(), "{sign_in_page}");
    for asset in ["htmx.min.js", "sse.js", "console.js", "console.css"] {
        let answer = client()
            .get(app.url(&format!("/assets/{asset}")))
            .send()
            .await
            .expect("the asset answers");
        assert_eq!(answer.status(), StatusCode::OK, "{asset}");
        let text = answer.text().await.unwrap_or_default();
        let urls = absolute_urls(&text);
        assert!(urls.is_empty(), "{asset} refers to {urls:?}");
        first_page_bytes += text.len();
    }
    assert!(
        first_page_bytes < 150 * 1024,
        "the first page and its assets weigh {first_page_bytes} bytes"
    );
    let missing = client()
        .get(app.url("/assets/nothing.js"))
        .send()
        .await
        .expect("the console answers");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Bad input on a page is answered with the field named, not a 500.
    let (status, html, _) = page(&app, &cookie, "/servers?state=sideways").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("state"), "{html}");
    let (status, _, _) = page(&app, &cookie, &format!("/servers/{}", api_support::uuid())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = page(&app, &cookie, "/servers/not-an-id").await;
    assert!(status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST);
    for (path, field) in [
        (
            format!("/console/servers/{server}/at?position=-1"),
            "position",
        ),
        (
            format!("/console/servers/{server}/at?position=x"),
            "position",
        ),
        ("/console/live?after=x".to_owned(), "after"),
        ("/console/live?sideways=1".to_owned(), "sideways"),
        ("/sign-in?next=a&next=b".to_owned(), "next"),
        ("/servers?page=0".to_owned(), "page"),
    ] {
        let (status, html, headers) = page(&app, &cookie, &path).await;
        assert!(status.is_client_error(), "{path}: {status} {html}");
        assert!(
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .starts_with("text/html"),
            "{path}: {headers:?}"
        );
        assert!(html.contains(field), "{path} does not name {field}: {html}");
    }
    // The last page there could be: an empty page, not an overflow.
    let (status, html, _) = page(&app, &cookie, "/servers?page=9223372036854775807").await;
    assert!(
        status.is_success() || status.is_client_error(),
        "{status}: {html}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_register_form_registers_an_http_api_whose_tools_the_catalog_lists_at_once() {
    let app = TestApp::spawn().await;
    let (cookie, _, csrf) = sign_in(&app, app.token(), &[]).await;
    // Larger than a form's default limit once encoded (256 KiB), within the API's.
    let mut document = berth_tests::pets_api::PetsApi::document();
    document["info"]["description"] = Value::String("x".repeat(300_000));
    let document = document.to_string();
    let form = [
        ("name", "pets-from-the-console"),
        ("transport", "stdio"),
        ("runtime", "openapi"),
        ("document", document.as_str()),
        ("base_url", "https://pets.example"),
        ("health_path", "/health"),
        ("operations", "getPet\naddPet"),
        ("auth_type", "header"),
        ("auth_name", "X-Key"),
        ("auth_secret", "PETS_KEY"),
        ("key_0", "PETS_KEY"),
        ("required_0", "on"),
        ("secret_0", "on"),
    ];
    let answer = client()
        .post(app.url("/console/catalog"))
        .header(header::COOKIE, &cookie)
        .header("X-CSRF-Token", &csrf)
        .form(&form)
        .send()
        .await
        .expect("the console answers");
    assert_eq!(answer.status(), StatusCode::CREATED);
    let created: Value = answer.json().await.expect("JSON");
    let entry = app
        .get(&format!(
            "/api/v1/catalog/{}?min_position={}",
            created["id"].as_str().unwrap_or_default(),
            created["position"]
        ))
        .await
        .json();
    assert_eq!(entry["runtime"]["type"], "openapi", "{entry}");
    let tools = tool_names(&entry);
    assert_eq!(tools, ["addPet", "getPet"], "{entry}");
    app.stop().await;
}
