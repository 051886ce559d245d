//! A real headless Chromium for the console's browser tests, driven over WebDriver
//! (thirtyfour) through Debian's chromedriver. `.ci/run` installs both and sets
//! `BERTH_REQUIRE_BROWSER=1`, so there a missing browser fails the run; elsewhere the
//! browser tests are skipped with a note.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use thirtyfour::prelude::*;
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver (in a process group of its own, with the Chromium it starts) and one
/// browser session.
pub struct Browser {
    pub driver: WebDriver,
    chromedriver: Child,
    base: String,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Where screenshots go: `target/console-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("creating the screenshot directory");
    dir
}

impl Browser {
    /// A browser on Berth at `base`, or `None` (skipped) when this machine has none.
    pub async fn start(base: &str) -> Option<Self> {
        let present =
            std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
        if !present {
            if std::env::var("BERTH_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("BERTH_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing");
            }
            eprintln!("skipped: no {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)");
            return None;
        }
        let port = free_port();
        // Chromium's profile and its scratch files both go in a directory of ours,
        // removed with the browser: a browser killed at the end leaves nothing in /tmp.
        let profile = tempfile::tempdir().expect("a browser profile directory");
        let scratch = profile.path().join("tmp");
        std::fs::create_dir(&scratch).expect("a scratch directory");
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .env("TMPDIR", &scratch)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            // Its own group: dropping the browser kills chromedriver and its Chromium.
            .process_group(0);
        let chromedriver = command.spawn().expect("starting chromedriver");
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(CHROMIUM).expect("binary");
        for arg in [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
        ] {
            caps.add_arg(arg).expect("argument");
        }
        caps.add_arg(&format!(
            "--user-data-dir={}",
            profile.path().join("user-data").display()
        ))
        .expect("argument");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let driver = loop {
            match WebDriver::new(&url, caps.clone()).await {
                Ok(driver) => break driver,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    panic!("chromedriver did not start a session: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Some(Self {
            driver,
            chromedriver,
            base: base.trim_end_matches('/').to_owned(),
            _profile: profile,
        })
    }

    /// Opens `path` of Berth.
    pub async fn open(&self, path: &str) {
        self.driver
            .goto(format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    }

    /// The path of the page shown now.
    pub async fn path(&self) -> String {
        let url = self.driver.current_url().await.expect("the current URL");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Signs in with `key` on the sign-in page Berth sends an unsigned browser to.
    pub async fn sign_in(&self, key: &str) {
        self.open("/servers").await;
        assert!(
            self.path().await.starts_with("/sign-in"),
            "{}",
            self.path().await
        );
        self.element("#key")
            .await
            .send_keys(key)
            .await
            .expect("typing the key");
        self.click("form[action='/sign-in'] button[type=submit]")
            .await;
        self.until_path("/servers").await;
    }

    /// The element `css` (waiting up to 20 s for it to exist).
    pub async fn element(&self, css: &str) -> WebElement {
        self.driver
            .query(By::Css(css))
            .wait(Duration::from_secs(20), Duration::from_millis(100))
            .first()
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Whether an element `css` exists now.
    pub async fn exists(&self, css: &str) -> bool {
        !self
            .driver
            .find_all(By::Css(css))
            .await
            .unwrap_or_default()
            .is_empty()
    }

    /// Types `text` into the field `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.element(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Clicks `css`.
    pub async fn click(&self, css: &str) {
        self.element(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// The text of `css`.
    pub async fn text(&self, css: &str) -> String {
        self.element(css).await.text().await.unwrap_or_default()
    }

    /// Waits (up to `secs`) until the text of `css` contains `wanted`; answers the text.
    pub async fn until_text(&self, css: &str, wanted: &str, secs: u64) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let text = self.text(css).await;
            if text.contains(wanted) {
                return text;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{css} never showed {wanted:?}; it shows {text:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (up to 20 s) until the page shown is at a path starting with `prefix`.
    pub async fn until_path(&self, prefix: &str) -> String {
        self.until_path_leaving(prefix, "").await
    }

    /// Waits (up to 20 s) until the page shown is at a path starting with `prefix` other
    /// than `from` (the page a form was sent from, which may share the prefix).
    pub async fn until_path_leaving(&self, prefix: &str, from: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let path = self.path().await;
            if path.starts_with(prefix) && path != from {
                return path;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("never reached {prefix}; at {path}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` in the page and answers what it returns.
    pub async fn run(&self, script: &str) -> serde_json::Value {
        self.driver
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("running {script}: {e}"))
            .json()
            .clone()
    }

    /// Writes a screenshot of the page as `<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let path = screenshot_dir().join(format!("{name}.png"));
        self.driver
            .screenshot(&path)
            .await
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
    }

    /// Ends the session and stops chromedriver.
    pub async fn quit(mut self) {
        let _ = self.driver.clone().quit().await;
        self.kill_group();
    }

    fn kill_group(&mut self) {
        if let Some(pid) = self.chromedriver.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill_group();
    }
}
