//! The app's page as the browser tests drive it: the app with Zoom's own
//! Apps SDK, `localhost` URLs of the page and of the simulated Zoom client
//! that frames it, the "no console error, no CSP violation" check, an
//! install done in the browser, and sampling a level meter. The browser
//! itself is `browser`'s.

use crate::support::browser::{Browser, UI_WAIT};
use crate::support::{Options, TestApp};

/// Side panel of the Zoom client (the host page frames the app at 400 px).
pub const PANEL: (u32, u32) = (1100, 900);
pub const WIDE: (u32, u32) = (1440, 900);

/// The app and a simulator serving Zoom's own Apps SDK (npm
/// `@zoom/appssdk`, see `sdks`) to the page.
pub async fn spawn() -> TestApp {
    TestApp::spawn_with(Options {
        // The browser must trust the simulator's origin for the SDK script.
        tls: false,
        apps_sdk: Some(crate::support::sdks::commonjs_build().await.to_owned()),
        ..Options::default()
    })
    .await
}

/// The browser uses `localhost`, like a developer would: the app's default
/// OAuth redirect (no PUBLIC_URL) is `http://localhost:{port}`, so the install
/// cookie is set for that host, and the host page and the framed app must be
/// same-site for it to be sent from the frame.
pub fn local(url: &str) -> String {
    url.replacen("//127.0.0.1:", "//localhost:", 1)
}

pub fn page_url(app: &TestApp, path: &str) -> String {
    local(&app.url(path))
}

pub fn host_url(app: &TestApp, extra: &str) -> String {
    let target =
        url::form_urlencoded::byte_serialize(page_url(app, "/").as_bytes()).collect::<String>();
    format!("{}/sim/client?app={target}{extra}", local(&app.sim_base))
}

pub async fn csp_violations(browser: &Browser) -> String {
    browser
        .attr_css("html", "data-csp-violations")
        .await
        .unwrap_or_default()
}

/// Zero console errors (from every frame), zero CSP violations, and no
/// warning from the Apps SDK (it warns when the page touches a property it
/// does not have, e.g. `then` when a promise is resolved with it).
pub async fn assert_clean(browser: &Browser) {
    assert_eq!(csp_violations(browser).await, "0");
    let entries = browser.console().await;
    let errors: Vec<_> = entries.iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    let sdk_warnings: Vec<_> = entries
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("Zoom Apps SDK"))
        })
        .collect();
    assert!(
        sdk_warnings.is_empty(),
        "Apps SDK warnings: {sdk_warnings:#?}"
    );
}

/// Open the app inside the simulated Zoom client and switch to its frame.
pub async fn open_in_zoom(browser: &Browser, app: &TestApp, extra: &str) {
    browser
        .client
        .goto(&host_url(app, extra))
        .await
        .expect("open the simulated client");
    browser.enter_app_frame().await;
}

/// The page says it runs in Zoom Contact Center (config() succeeded).
pub async fn wait_in_zoom(browser: &Browser) {
    browser
        .wait_text("where", "in-Zoom state", |t| {
            t.contains("Zoom Contact Center")
        })
        .await;
}

/// Install the app as the simulator's default agent, in this browser: the
/// OAuth callback signs the browser in (the session then knows the account).
pub async fn install_in_browser(app: &TestApp, browser: &Browser) {
    browser
        .client
        .goto(&page_url(app, "/api/auth/install"))
        .await
        .expect("start the install");
    let base = page_url(app, "/");
    browser
        .wait_until("the install to come back to the app", || async {
            browser
                .client
                .current_url()
                .await
                .is_ok_and(|u| u.as_str().starts_with(&base) && !u.path().starts_with("/api/"))
        })
        .await;
}

/// Sample a meter's level until it has shown `n` different non-zero values.
pub async fn meter_moves(browser: &Browser, id: &str, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + UI_WAIT;
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "#{id} did not move: levels seen {seen:?}"
        );
        if let Some(level) = browser.attr(id, "data-level").await
            && level.parse::<f64>().is_ok_and(|l| l > 0.0)
            && !seen.contains(&level)
        {
            seen.push(level);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    seen
}
