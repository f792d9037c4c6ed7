//! A real browser for the console's tests: Debian's Chromium, headless, driven through
//! chromedriver (WebDriver) with fantoccini. Each [`Browser`] has its own chromedriver on a free
//! loopback port and its own empty profile; Chromium's own background traffic is switched off, so
//! the only requests it makes are the test's, to the hub on loopback.
//!
//! Screenshots go to `target/console-screenshots/`; with `WEFT_UPDATE_SCREENSHOTS=1` the ones the
//! README shows are also copied to `docs/screenshots/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::support::{free_port, repo_root};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The screenshots the README shows, kept in `docs/screenshots/`.
const README_SHOTS: &[&str] = &["overview", "workflow-graph", "run-inspector"];
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium under chromedriver, with a WebDriver session open.
pub struct Browser {
    pub client: Client,
    driver: Child,
    driver_url: String,
    _profile: tempfile::TempDir,
}

/// Whether this machine can run the browser tests; without them, the tests fail under
/// `WEFT_REQUIRE_SERVICES=1` (as CI sets it) and are skipped with a note otherwise.
pub fn available() -> bool {
    let there =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !there {
        assert!(
            std::env::var_os("WEFT_REQUIRE_SERVICES").is_none(),
            "the console's browser tests need Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER})"
        );
        eprintln!(
            "skipped: {CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)"
        );
    }
    there
}

impl Browser {
    /// Starts chromedriver and a Chromium window of `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-extensions",
                    "--disable-default-apps", "--hide-scrollbars", "--force-device-scale-factor=1",
                    "--lang=en-US",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        if width < 500 {
            // Windows narrower than Chromium's minimum: emulate the phone's screen instead.
            caps["goog:chromeOptions"]["mobileEmulation"] = json!({
                "deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0, "touch": false}
            });
        }
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("chromedriver gives no session within 30 s: {e}"),
            }
        };
        Browser {
            client,
            driver,
            driver_url: url,
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    /// The first element matching `css`, waiting for it up to 10 s.
    pub async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                let shot = self.screenshot("failed").await;
                let source = self.client.source().await.unwrap_or_default();
                let errors = self.console_errors().await;
                panic!(
                    "no `{css}` on the page within 10 s: {e}\nscreenshot: {}\nbrowser errors: {errors:?}\npage:\n{source}",
                    shot.display()
                )
            }
        }
    }

    /// The visible text of every element matching `css` now.
    pub async fn all_text(&self, css: &str) -> Vec<String> {
        // Read in one script, so that a re-render between finding and reading cannot leave a
        // stale element.
        let script = format!(
            "return [...document.querySelectorAll({})].map((e) => e.innerText);",
            serde_json::to_string(css).unwrap()
        );
        let texts = self.eval(&script).await;
        texts
            .as_array()
            .expect("a list")
            .iter()
            .map(|t| t.as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Waits (up to 10 s) until the page's text contains `text` (ignoring case: headings may be
    /// shown in capitals).
    pub async fn until_text(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let body = self.text("body").await;
            if body.to_lowercase().contains(&text.to_lowercase()) {
                return;
            }
            if Instant::now() >= deadline {
                let shot = self.screenshot("failed").await;
                panic!(
                    "the page never showed {text:?} (screenshot: {}); it shows:\n{body}",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Clicks the first button or link whose text is `label`, waiting for it up to 10 s.
    pub async fn click_text(&self, label: &str) {
        let xpath = format!(
            "//*[(self::button or self::a) and normalize-space(.)={}]",
            xpath_literal(label)
        );
        let element = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no button or link {label:?} within 10 s: {e}"));
        element.click().await.unwrap();
    }

    /// Answers the open confirmation dialog with its action button.
    pub async fn confirm(&self) {
        self.find("dialog[open] .actions button:last-child")
            .await
            .click()
            .await
            .unwrap();
    }

    /// Whether a button or link whose text is `label` is on the page now.
    pub async fn has_button(&self, label: &str) -> bool {
        let xpath = format!(
            "//*[(self::button or self::a) and normalize-space(.)={}]",
            xpath_literal(label)
        );
        !self
            .client
            .find_all(Locator::XPath(&xpath))
            .await
            .unwrap()
            .is_empty()
    }

    /// Runs `script` in the page and returns what it returns (a promise is awaited).
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(
                &format!("return (async () => {{ {script} }})();"),
                Vec::new(),
            )
            .await
            .expect("the script runs")
    }

    /// What the pages logged at the level of errors since the last call (uncaught exceptions,
    /// failed loads, CSP refusals), read through chromedriver's log endpoint.
    pub async fn console_errors(&self) -> Vec<String> {
        let session = self.client.session_id().await.unwrap().expect("a session");
        let logs: Value = reqwest::Client::new()
            .post(format!("{}/session/{session}/se/log", self.driver_url))
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("a JSON answer");
        logs["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["level"] == "SEVERE")
            .map(|l| l["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Saves a screenshot as `target/console-screenshots/<name>.png`, and with
    /// `WEFT_UPDATE_SCREENSHOTS=1`, if the README shows it, as `docs/screenshots/<name>.png` too.
    /// Returns the first path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        // Let layout and fonts settle.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = repo_root().join("target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        if std::env::var_os("WEFT_UPDATE_SCREENSHOTS").is_some() && README_SHOTS.contains(&name) {
            let docs = repo_root().join("docs/screenshots");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(format!("{name}.png")), &png).unwrap();
        }
        path
    }

    pub async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }
}

fn xpath_literal(s: &str) -> String {
    if !s.contains('\'') {
        format!("'{s}'")
    } else {
        format!("\"{s}\"")
    }
}
