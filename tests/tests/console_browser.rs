//! The web console in a real headless Chromium: what the README's walkthrough does,
//! done with a browser and no terminal. Berth runs fixture servers as local processes;
//! every page visited is written as a screenshot to `target/console-screenshots/`.

mod api_support;
mod console_support;

use api_support::{process_fixture_entry, user, TestApp};
use console_support::Browser;
use serde_json::json;

/// Registers the fixture (a process entry with one plain setting, GREETING) and
/// publishes it, as the administrator; answers its id.
async fn fixture_entry(app: &TestApp, name: &str) -> String {
    let entry = app
        .register(&process_fixture_entry(name, "stdio", &["GREETING"]))
        .await;
    app.command(&format!("/api/v1/catalog/{entry}/publish"))
        .await
        .expect(202);
    entry
}

/// A server of `entry` named `name`, created through the API; answers its id.
async fn server_of(app: &TestApp, entry: &str, name: &str) -> String {
    app.post(
        "/api/v1/servers",
        &json!({"catalog_id": entry, "name": name}),
    )
    .await
    .id()
}

/// Waits until the servers list shows server `id` in `state`.
async fn until_status(browser: &Browser, id: &str, state: &str, secs: u64) {
    browser
        .until_text(&format!("span.status[data-server='{id}']"), state, secs)
        .await;
}

#[tokio::test]
async fn an_administrator_runs_the_walkthrough_in_the_browser() {
    let app = TestApp::spawn_with_processes().await;
    let Some(browser) = Browser::start(&app.url("")).await else {
        app.stop().await;
        return;
    };

    // Sign in with the administrator's key.
    browser.sign_in(app.token()).await;
    browser.screenshot("01-servers-empty").await;

    // Register the fixture as a `process` entry with the console's form.
    browser.open("/catalog").await;
    browser.click("a[href='/catalog/new']").await;
    browser.until_path("/catalog/new").await;
    browser.type_into("#entry-name", "fixture-tools").await;
    browser
        .type_into("#entry-description", "the test fixture")
        .await;
    let runtime = browser.element("#entry-runtime").await;
    thirtyfour::components::SelectElement::new(&runtime)
        .await
        .expect("a select")
        .select_by_value("process")
        .await
        .expect("choosing process");
    let program = berth_tests::docker::fixture_binary()
        .to_string_lossy()
        .into_owned();
    browser.type_into("#entry-program", &program).await;
    browser.type_into("input[name=key_0]", "GREETING").await;
    browser.screenshot("02-catalog-register").await;
    // A problem is shown in place, and changes nothing: no name yet.
    browser
        .run("document.getElementById('entry-name').removeAttribute('required'); return true;")
        .await;
    browser
        .element("#entry-name")
        .await
        .clear()
        .await
        .expect("clearing");
    browser.click("#register-entry button[type=submit]").await;
    browser
        .until_text("#register-entry .problem", "name", 10)
        .await;
    browser.type_into("#entry-name", "fixture-tools").await;
    browser.click("#register-entry button[type=submit]").await;
    let entry = browser
        .until_path_leaving("/catalog/", "/catalog/new")
        .await
        .trim_start_matches("/catalog/")
        .to_owned();

    // The catalog, the entry, and a server made with the form its schema generates.
    browser.open("/catalog").await;
    browser.until_text("main table", "fixture-tools", 10).await;
    browser.screenshot("02-catalog").await;
    // For the viewer's test as well: the entry is published.
    app.command(&format!("/api/v1/catalog/{entry}/publish"))
        .await
        .expect(202);
    browser.click(&format!("a[href='/catalog/{entry}']")).await;
    browser.until_path(&format!("/catalog/{entry}")).await;
    browser.type_into("#server-name", "walk").await;
    browser.type_into("#field-GREETING", "first").await;
    browser.screenshot("03-catalog-entry").await;
    browser.click("#create-server button[type=submit]").await;
    browser.until_path("/servers/").await;
    let id = browser
        .path()
        .await
        .trim_start_matches("/servers/")
        .to_owned();
    browser.until_text("table.config", "first", 10).await;

    // A second setting, so the server has a past to travel to.
    app.json(
        reqwest::Method::PATCH,
        &format!("/api/v1/servers/{id}"),
        &json!({"config": {"GREETING": "second"}}),
    )
    .await
    .expect(202);
    browser.open(&format!("/servers/{id}")).await;
    browser.until_text("table.config", "second", 10).await;

    // Start it, and see `running` arrive without a reload (the marker survives).
    browser
        .run("window.berthMarker = 'kept'; return true;")
        .await;
    browser.click("button[aria-label='Start walk']").await;
    browser.until_text("span.status", "running", 60).await;
    // Its tools arrive the same way, with their input schemas.
    browser.until_text("div.tools", "echo", 20).await;
    assert_eq!(
        browser.run("return window.berthMarker || null;").await,
        json!("kept"),
        "the page was reloaded"
    );
    browser.screenshot("04-server-running").await;
    browser.click("button[hx-post$='/test']").await;
    browser
        .until_text("#test-result", "Handshake answered", 20)
        .await;

    // Its logs, as they are written.
    browser.click("button[data-follow-logs]").await;
    browser.until_text("#logs", "berth-fixture-mcp", 20).await;
    browser.screenshot("05-server-logs").await;

    // The time slider: at the first change, the first setting.
    let slider = browser.element("#time-slider").await;
    slider
        .send_keys(thirtyfour::Key::Home)
        .await
        .expect("moving the slider");
    browser.until_text("#as-of", "first", 10).await;
    let label = browser.text("#time-label").await;
    assert!(label.starts_with("position "), "{label}");
    slider
        .send_keys(thirtyfour::Key::End)
        .await
        .expect("moving the slider");
    browser.until_text("#as-of", "second", 10).await;
    browser.screenshot("06-server-time-slider").await;

    // A second server, started through the API, then both stopped in one bulk action
    // from the list, with its progress shown as it happens.
    let other = server_of(&app, &entry, "walk-two").await;
    app.start(&other).await;
    app.until_state(&other, "running").await;
    browser.open("/servers").await;
    until_status(&browser, &other, "running", 20).await;
    browser.click(&format!("input[value='{id}']")).await;
    browser.click(&format!("input[value='{other}']")).await;
    browser.click("button[name=operation][value=stop]").await;
    let progress = browser.until_text("#bulk-progress", "completed", 60).await;
    assert!(progress.contains("2 of 2 done"), "{progress}");
    until_status(&browser, &id, "stopped", 30).await;
    until_status(&browser, &other, "stopped", 30).await;
    browser.screenshot("07-servers-bulk-stop").await;
    // A server created elsewhere joins the list as it is.
    let third = server_of(&app, &entry, "walk-three").await;
    until_status(&browser, &third, "stopped", 20).await;

    // The actions are in the audit trail, each linking to its event.
    browser.open("/audit").await;
    let audit = browser
        .until_text("main table", "bulk_operation.began", 10)
        .await;
    for action in [
        "server.start_requested",
        "server.stop_requested",
        "user:admin",
    ] {
        assert!(audit.contains(action), "{action} is not in the audit page");
    }
    browser.screenshot("08-audit").await;
    browser
        .click("main table tbody tr a[href^='/events/']")
        .await;
    browser.until_path("/events/").await;
    browser.until_text("pre.json", "aggregate_type", 10).await;

    // The other pages render, for the record.
    for (path, name) in [("/events", "09-events"), ("/gateway", "10-gateway")] {
        browser.open(path).await;
        browser.element("main h1").await;
        browser.screenshot(name).await;
    }

    // A user and a key for them, the key shown once, then revoked.
    browser.open("/users").await;
    browser.type_into("#user-name", "grace").await;
    browser
        .click("form[hx-post='/api/v1/users'] button[type=submit]")
        .await;
    browser.until_path("/users/").await;
    browser.type_into("#key-name", "laptop").await;
    browser
        .click("form[hx-post$='/keys'] button[type=submit]")
        .await;
    let key = browser.until_text("#new-key", "berth_", 10).await;
    let me = app.send_as(&key, reqwest::Method::GET, "/api/v1/me").await;
    assert_eq!(me.status, 200, "the key shown works");
    assert_eq!(me.json()["name"], "grace");
    browser.screenshot("11-user-keys").await;
    browser.open(browser.path().await.as_str()).await;
    browser.click("button[aria-label='Revoke laptop']").await;
    browser.until_text("main table", "revoked", 10).await;
    assert_eq!(
        app.send_as(&key, reqwest::Method::GET, "/api/v1/me")
            .await
            .status,
        401
    );
    browser.open("/users").await;
    browser.until_text("main table", "grace", 10).await;
    browser.screenshot("12-users").await;

    // Readable on a phone.
    browser
        .driver
        .set_window_rect(0, 0, 390, 844)
        .await
        .expect("a phone-sized window");
    browser.open("/servers").await;
    browser.element("main table").await;
    browser.screenshot("13-servers-phone").await;
    browser
        .driver
        .set_window_rect(0, 0, 1280, 1000)
        .await
        .expect("back to a laptop");

    // Deleting from the server's page asks first, then goes back to the list.
    browser.open(&format!("/servers/{other}")).await;
    browser.click("button[hx-delete]").await;
    browser
        .driver
        .accept_alert()
        .await
        .expect("confirming the deletion");
    browser
        .until_path_leaving("/servers", &format!("/servers/{other}"))
        .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.get(&format!("/api/v1/servers/{other}")).await.status != 404 {
        assert!(tokio::time::Instant::now() < deadline, "never deleted");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The events page follows the log live: the event of a command sent after the page
    // was read (earlier ones of its type are listed already) gets a row of its own.
    browser.open("/events").await;
    browser.element("#event-rows").await;
    let started = app.command(&format!("/api/v1/servers/{id}/start")).await;
    started.expect(202);
    browser
        .element(&format!(
            "#event-rows a[href='/events/{}']",
            started.position()
        ))
        .await;

    browser.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn a_viewer_sees_no_actions_and_is_signed_out_when_the_key_is_revoked() {
    let app = TestApp::spawn_with_processes().await;
    let Some(browser) = Browser::start(&app.url("")).await else {
        app.stop().await;
        return;
    };
    let entry = fixture_entry(&app, "fixture-seen").await;
    let vera = user(&app, "vera", "viewer").await;

    browser.sign_in(&vera.key).await;
    browser.open(&format!("/catalog/{entry}")).await;
    browser.element("main h1").await;
    assert!(
        !browser.exists("#create-server").await,
        "a viewer got the create form"
    );
    browser.screenshot("14-viewer-catalog-entry").await;
    browser.open("/servers").await;
    browser.element("main table").await;
    for action in [
        "button[hx-post]",
        "button[name=operation]",
        "input[type=checkbox]",
    ] {
        assert!(!browser.exists(action).await, "a viewer got {action}");
    }
    assert!(!browser.exists("a[href='/users']").await);
    browser.screenshot("15-viewer-servers").await;

    // Forcing an action with the session's own CSRF token: the API's 403.
    let forced = browser
        .run(&format!(
            "const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];
             const xhr = new XMLHttpRequest();
             xhr.open('POST', '/api/v1/servers', false);
             xhr.setRequestHeader('Content-Type', 'application/json');
             xhr.setRequestHeader('X-CSRF-Token', token);
             xhr.send(JSON.stringify({{catalog_id: '{entry}', name: 'forced'}}));
             return [xhr.status, JSON.parse(xhr.responseText).title];"
        ))
        .await;
    assert_eq!(forced, json!([403, "Forbidden"]), "{forced}");

    // The key revoked elsewhere: the open page ends its session by itself.
    app.send(
        reqwest::Method::DELETE,
        &format!("/api/v1/keys/{}", vera.key_id),
        None,
        None,
        &[],
    )
    .await
    .expect(202);
    browser.until_path("/sign-in").await;
    browser.until_text("main", "session ended", 10).await;
    browser.screenshot("16-signed-out").await;
    browser.open("/servers").await;
    assert!(browser.path().await.starts_with("/sign-in"));

    browser.quit().await;
    app.stop().await;
}
