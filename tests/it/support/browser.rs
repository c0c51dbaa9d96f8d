//! Headless Chromium for the page tests: chromedriver on a free port, a fresh
//! profile (and TMPDIR) per test, fantoccini over plain HTTP.
//!
//! Console errors come from chromedriver's log endpoint
//! (`POST /session/{id}/se/log {"type":"browser"}`, enabled with
//! `goog:loggingPrefs`), which sees every frame, including messages logged
//! before the page's own scripts run; CSP violations are also counted by the
//! page itself (`data-csp-violations`, a `securitypolicyviolation` listener).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Longest wait for anything the page should show.
pub const UI_WAIT: Duration = Duration::from_secs(20);

pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    profile: tempfile::TempDir,
}

/// `POST /session/{id}/se/log`: drains the browser's console log.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// A fresh headless Chromium, `width`×`height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> Browser {
        assert!(
            std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists(),
            "browser tests need Debian's chromium and chromium-driver \
             (apt-get install -y chromium chromium-driver)"
        );
        let profile = tempfile::tempdir().expect("profile dir");
        // The port is picked then released; retry if another process took it.
        for attempt in 0..3 {
            let port = free_port();
            let mut driver = tokio::process::Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .env("TMPDIR", profile.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("chromedriver starts");
            if !wait_listening(port, &mut driver).await {
                let _ = driver.kill().await;
                continue;
            }
            let user_data = profile.path().join("chromium");
            let args = vec![
                "--headless".to_owned(),
                "--no-sandbox".to_owned(),
                "--disable-gpu".to_owned(),
                "--disable-quic".to_owned(),
                "--no-first-run".to_owned(),
                "--disable-background-networking".to_owned(),
                "--disable-component-update".to_owned(),
                "--disable-sync".to_owned(),
                "--disable-dev-shm-usage".to_owned(),
                "--hide-scrollbars".to_owned(),
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", user_data.display()),
            ];
            let mut caps = serde_json::Map::new();
            caps.insert(
                "goog:chromeOptions".into(),
                json!({ "binary": CHROMIUM, "args": args }),
            );
            caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
            let connected =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{port}"))
                    .await;
            match connected {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        profile,
                    };
                }
                Err(e) if attempt < 2 => {
                    eprintln!("chromedriver session failed ({e}); retrying");
                    let _ = driver.kill().await;
                }
                Err(e) => panic!("chromedriver session: {e}"),
            }
        }
        panic!("chromedriver did not start");
    }

    /// Console entries logged since the last call.
    pub async fn console(&self) -> Vec<Value> {
        match self.client.issue_cmd(BrowserLog).await {
            Ok(Value::Array(entries)) => entries,
            Ok(other) => panic!("unexpected log answer: {other}"),
            Err(e) => panic!("reading the browser log: {e}"),
        }
    }

    /// Console errors (level SEVERE) since the last call to `console`.
    pub async fn console_errors(&self) -> Vec<String> {
        self.console()
            .await
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The element with this id, once it exists and `pred` holds for its
    /// text, within `UI_WAIT`. Returns the text.
    pub async fn wait_text(&self, id: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + UI_WAIT;
        let mut last = String::new();
        loop {
            if let Ok(el) = self.client.find(Locator::Id(id)).await
                && let Ok(text) = el.text().await
            {
                if pred(&text) {
                    return text;
                }
                last = text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "#{id}: no {what} within {UI_WAIT:?}; last text {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the status list shows a line with this message.
    pub async fn wait_status(&self, message: &str) {
        self.wait_text("status", message, |t| t.contains(message))
            .await;
    }

    /// An attribute of the element with this id (None if absent).
    pub async fn attr(&self, id: &str, name: &str) -> Option<String> {
        let el = self.client.find(Locator::Id(id)).await.ok()?;
        el.attr(name).await.ok().flatten()
    }

    /// An attribute of the first element matching a CSS selector.
    pub async fn attr_css(&self, css: &str, name: &str) -> Option<String> {
        let el = self.client.find(Locator::Css(css)).await.ok()?;
        el.attr(name).await.ok().flatten()
    }

    /// Whether the button with this id is disabled.
    pub async fn disabled(&self, id: &str) -> bool {
        self.attr(id, "disabled").await.is_some()
    }

    /// Wait until `check` on the page holds, polling every 50 ms.
    pub async fn wait_until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + UI_WAIT;
        while !check().await {
            if tokio::time::Instant::now() >= deadline {
                let url = self.client.current_url().await.map(|u| u.to_string());
                panic!("timed out waiting for {what} (page {url:?})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Switch into the app's iframe on the simulated Zoom client page.
    pub async fn enter_app_frame(&self) {
        let frame = self
            .client
            .wait()
            .at_most(UI_WAIT)
            .for_element(Locator::Id("app"))
            .await
            .expect("the host page frames the app");
        frame.enter_frame().await.expect("enter the app frame");
        self.client
            .wait()
            .at_most(UI_WAIT)
            .for_element(Locator::Css("html[data-ready='true']"))
            .await
            .expect("the app page finishes starting");
    }

    /// Write a PNG of the current page to `target/screenshots/{name}.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    pub async fn close(self) {
        let Browser {
            client,
            mut driver,
            profile,
        } = self;
        let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        let _ = driver.kill().await;
        let _ = driver.wait().await;
        drop(profile);
    }
}

/// `target/screenshots` (the parent of `CARGO_TARGET_TMPDIR`).
pub fn screenshot_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent()
        .map(|p| p.join("screenshots"))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots"))
}

async fn wait_listening(port: u16, driver: &mut tokio::process::Child) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(_)) = driver.try_wait() {
            return false;
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
