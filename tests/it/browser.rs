//! The page in headless Chromium, inside the simulated Zoom client (the app
//! framed by `/sim/client`, running Zoom's own Apps SDK served by the
//! simulator) and outside Zoom (a plain tab, engagements from webhooks).

use fantoccini::Locator;
use serde_json::json;

use crate::support::browser::{Browser, UI_WAIT};
use crate::support::page::*;
use crate::support::{Options, TestApp};

#[tokio::test]
async fn the_page_loads_outside_zoom_with_no_console_errors_or_csp_violations() {
    let app = spawn().await;
    let browser = Browser::start(WIDE.0, WIDE.1).await;
    browser
        .client
        .goto(&page_url(&app, "/"))
        .await
        .expect("open the page");
    browser
        .client
        .wait()
        .at_most(UI_WAIT)
        .for_element(Locator::Css("html[data-ready='true']"))
        .await
        .expect("the page starts");
    browser
        .wait_text("where", "outside-Zoom state", |t| {
            t.contains("Outside Zoom")
        })
        .await;
    // Not signed in: the page does not even ask for the feed.
    browser
        .wait_text("live", "the signed-out state", |t| {
            t == "Live: sign in to see your engagements"
        })
        .await;
    assert_clean(&browser).await;

    // The checks can see a violation: a data: image breaks img-src 'self'.
    browser
        .client
        .execute(
            "const i = document.createElement('img'); \
             i.src = 'data:image/gif;base64,R0lGODlhAQABAAAAACw='; document.body.append(i);",
            vec![],
        )
        .await
        .expect("inject an image");
    browser
        .wait_until("the violation to be counted", || async {
            csp_violations(&browser).await == "1"
        })
        .await;
    let errors = browser.console_errors().await;
    assert!(
        errors.iter().any(|e| e.contains("Content Security Policy")),
        "{errors:#?}"
    );
    browser.close().await;
    app.shutdown().await;
}

#[tokio::test]
async fn the_page_loads_inside_the_zoom_client_with_no_console_errors_or_csp_violations() {
    let app = spawn().await;
    let browser = Browser::start(PANEL.0, PANEL.1).await;
    open_in_zoom(&browser, &app, "").await;
    wait_in_zoom(&browser).await;
    browser
        .wait_text("live", "a live feed", |t| t == "Live")
        .await;
    browser.screenshot("inside-zoom-panel").await;
    assert_clean(&browser).await;
    browser.close().await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_tampered_app_context_is_refused_and_the_page_says_so() {
    let app = spawn().await;
    let browser = Browser::start(PANEL.0, PANEL.1).await;
    open_in_zoom(&browser, &app, "&context=tampered").await;
    let text = browser
        .wait_text("alert-context", "a refusal", |t| t.contains("refused"))
        .await;
    assert!(text.contains("failed authentication"), "{text}");
    // Still in Zoom, still live: only the identity was refused.
    wait_in_zoom(&browser).await;
    browser.close().await;
    app.shutdown().await;
}

#[tokio::test]
async fn outside_zoom_without_the_sdk_the_page_follows_webhook_engagements() {
    let app = TestApp::spawn_with(Options {
        tls: false,
        apps_sdk: Some(crate::support::sdks::commonjs_build().await.to_owned()),
        // The SDK cannot be loaded (404): the page must not care.
        tweak: |args| {
            let sim = args.zoom_host.clone().unwrap_or_default();
            args.apps_sdk_url = Some(format!("{sim}/sim/no-such-sdk.js"));
        },
        ..Options::default()
    })
    .await;
    let browser = Browser::start(WIDE.0, WIDE.1).await;
    // Signed in by an install in this browser: the agent's own engagements.
    install_in_browser(&app, &browser).await;
    browser
        .client
        .goto(&page_url(&app, "/"))
        .await
        .expect("open the page");
    browser
        .wait_text("where", "outside-Zoom state", |t| {
            t.contains("Outside Zoom")
        })
        .await;
    browser
        .wait_text("live", "a live feed", |t| t == "Live")
        .await;

    let agent = app.sim.default_user();
    let engagement = "ENG-webhook-1";
    let started = app
        .post_webhook(&json!({
            "event": "contact_center.engagement_started",
            "event_ts": crate::support::now_secs() * 1000,
            "payload": {
                "account_id": agent.account_id,
                "object": {"engagement_id": engagement, "user_id": agent.user_id},
            },
        }))
        .await;
    assert!(started.status().is_success(), "{}", started.status());
    browser
        .wait_text("engagement-id", "the webhook engagement", |t| {
            t == engagement
        })
        .await;
    browser
        .wait_text("engagement-state", "active", |t| {
            t.eq_ignore_ascii_case("active")
        })
        .await;
    let source = browser
        .wait_text("engagement-source", "a source", |t| !t.is_empty())
        .await;
    assert!(source.contains("webhooks"), "{source}");
    browser.screenshot("outside-zoom-wide").await;

    let ended = app
        .post_webhook(&json!({
            "event": "contact_center.engagement_ended",
            "event_ts": crate::support::now_secs() * 1000 + 1,
            "payload": {"account_id": agent.account_id, "object": {"engagement_id": engagement}},
        }))
        .await;
    assert!(ended.status().is_success(), "{}", ended.status());
    browser
        .wait_text("engagement-state", "ended", |t| {
            t.eq_ignore_ascii_case("ended")
        })
        .await;
    assert!(browser.disabled("start").await && browser.disabled("stop").await);
    browser.close().await;
    app.shutdown().await;
}

#[tokio::test]
async fn in_zoom_an_agent_starts_rtms_watches_it_live_stops_it_and_the_engagement_ends() {
    let app = spawn().await;
    let browser = Browser::start(PANEL.0, PANEL.1).await;
    install_in_browser(&app, &browser).await;
    open_in_zoom(&browser, &app, "").await;
    browser
        .wait_text("auth-state", "authorized", |t| t == "Authorized with Zoom")
        .await;
    assert!(browser.disabled("start").await, "no engagement yet");

    let engagement = app.sim.create_engagement().await.expect("an engagement");
    browser
        .wait_text("engagement-id", "the engagement", |t| t == engagement)
        .await;
    browser
        .wait_text("engagement-state", "active", |t| {
            t.eq_ignore_ascii_case("active")
        })
        .await;
    browser
        .wait_until("Start to be enabled", || async {
            !browser.disabled("start").await
        })
        .await;
    assert!(browser.disabled("stop").await, "nothing to stop yet");

    browser
        .client
        .find(Locator::Id("start"))
        .await
        .expect("start button")
        .click()
        .await
        .expect("click Start");
    browser.wait_status("Starting RTMS connection").await;
    browser.wait_status("Received 50 audio chunks").await;
    let caller = meter_moves(&browser, "meter-caller", 3).await;
    let agent = meter_moves(&browser, "meter-agent", 3).await;
    eprintln!("caller levels {caller:?}, agent levels {agent:?}");
    let frames: u64 = browser
        .wait_text("frames-caller", "caller frames", |t| t != "0")
        .await
        .replace(',', "")
        .parse()
        .expect("a frame count");
    assert!(frames > 0);
    browser
        .wait_until("Stop to be enabled", || async {
            !browser.disabled("stop").await
        })
        .await;
    let shot = browser.screenshot("live-view").await;
    eprintln!("screenshot: {}", shot.display());

    browser
        .client
        .find(Locator::Id("stop"))
        .await
        .expect("stop button")
        .click()
        .await
        .expect("click Stop");
    browser.wait_status("RTMS stopped").await;

    app.sim
        .end_engagement(&engagement)
        .await
        .expect("end the engagement");
    browser
        .wait_text("engagement-state", "ended", |t| {
            t.eq_ignore_ascii_case("ended")
        })
        .await;
    assert!(browser.disabled("start").await, "Start is off once ended");
    assert!(browser.disabled("stop").await, "Stop is off once ended");

    assert_clean(&browser).await;
    browser.close().await;
    app.shutdown().await;
}

#[tokio::test]
async fn an_unauthorized_account_sees_connect_and_start_stays_disabled() {
    let app = spawn().await;
    let browser = Browser::start(PANEL.0, PANEL.1).await;
    open_in_zoom(&browser, &app, "").await;
    let engagement = app.sim.create_engagement().await.expect("an engagement");
    browser
        .wait_text("engagement-state", "active", |t| {
            t.eq_ignore_ascii_case("active")
        })
        .await;
    browser
        .wait_text("engagement-id", "the engagement", |t| t == engagement)
        .await;
    browser
        .wait_text("auth-state", "not connected", |t| {
            t == "Not connected to Zoom"
        })
        .await;
    let connect = browser
        .client
        .find(Locator::Id("connect"))
        .await
        .expect("connect link");
    assert!(
        connect.is_displayed().await.expect("displayed?"),
        "Connect is shown"
    );
    assert_eq!(
        connect.attr("href").await.expect("href").as_deref(),
        Some("/api/auth/install")
    );
    assert!(browser.disabled("start").await, "Start needs authorization");
    assert!(browser.disabled("stop").await);
    let hint = browser
        .wait_text("controls-hint", "a hint", |t| !t.is_empty())
        .await;
    assert!(hint.contains("Connect to Zoom"), "{hint}");
    browser.close().await;
    app.shutdown().await;
}

#[tokio::test]
async fn outside_zoom_the_wide_live_view_follows_a_stream_started_from_webhooks() {
    // Recording on: the page lists the call's recordings.
    let app = TestApp::spawn_with(Options {
        tls: false,
        apps_sdk: Some(crate::support::sdks::commonjs_build().await.to_owned()),
        tweak: crate::support::app::with_recordings,
        ..Options::default()
    })
    .await;
    let browser = Browser::start(WIDE.0, WIDE.1).await;
    install_in_browser(&app, &browser).await;
    browser
        .client
        .goto(&page_url(&app, "/"))
        .await
        .expect("open the page");
    browser
        .wait_text("live", "a live feed", |t| t == "Live")
        .await;
    let engagement = app.sim.create_engagement().await.expect("an engagement");
    browser
        .wait_text("engagement-id", "the webhook engagement", |t| {
            t == engagement
        })
        .await;
    // As if the agent's REST call had been made elsewhere.
    app.sim.start_rtms(&engagement).await.expect("RTMS starts");
    browser.wait_status("Starting RTMS connection").await;
    browser.wait_status("Received 50 audio chunks").await;
    meter_moves(&browser, "meter-caller", 2).await;
    browser
        .wait_text("stream-state", "streaming", |t| {
            t.eq_ignore_ascii_case("streaming")
        })
        .await;
    let links = browser
        .wait_text("recordings", "a recording link per party", |t| {
            t.contains("Caller") && t.contains("Agent")
        })
        .await;
    assert!(links.contains(" s"), "{links}");
    let href = browser
        .attr_css("#recordings a", "href")
        .await
        .expect("a download link");
    assert!(
        href.contains(&format!("/api/recordings/{engagement}/")) && href.ends_with(".wav"),
        "{href}"
    );
    let shot = browser.screenshot("live-view-wide").await;
    eprintln!("screenshot: {}", shot.display());
    app.sim.stop_rtms(&engagement).await.expect("RTMS stops");
    browser.wait_status("RTMS stopped").await;
    browser.close().await;
    app.shutdown().await;
}

#[tokio::test]
async fn in_demo_mode_the_page_says_it_is_a_simulation() {
    let app = TestApp::spawn_demo().await;
    let browser = Browser::start(WIDE.0, WIDE.1).await;
    browser
        .client
        .goto(&page_url(&app, "/"))
        .await
        .expect("open the page");
    let banner = browser
        .wait_text("demo-banner", "the demo banner", |t| !t.is_empty())
        .await;
    assert!(banner.contains("Demo mode"), "{banner}");
    assert!(banner.contains("simulat"), "{banner}");
    browser
        .wait_text("live", "a live feed", |t| t == "Live")
        .await;
    browser.close().await;
    app.shutdown().await;
}

#[tokio::test]
async fn in_zoom_an_agent_connects_through_in_client_oauth_without_leaving_the_client() {
    let app = spawn().await;
    let browser = Browser::start(PANEL.0, PANEL.1).await;
    open_in_zoom(&browser, &app, "").await;
    browser
        .wait_text("auth-state", "not connected", |t| {
            t == "Not connected to Zoom"
        })
        .await;
    let engagement = app.sim.create_engagement().await.expect("an engagement");
    browser
        .wait_text("engagement-id", "the engagement", |t| t == engagement)
        .await;
    browser
        .client
        .find(Locator::Id("connect"))
        .await
        .expect("connect link")
        .click()
        .await
        .expect("click Connect");
    browser
        .wait_text("auth-state", "authorized", |t| t == "Authorized with Zoom")
        .await;
    browser
        .wait_until("Start to be enabled", || async {
            !browser.disabled("start").await
        })
        .await;
    let windows = browser.client.windows().await.expect("windows");
    assert_eq!(windows.len(), 1, "no install tab was opened");
    // The simulator counted one authorization-code grant.
    let grants = app.sim.stats()["token_requests"]["authorization_code"].clone();
    assert_eq!(grants, 1, "{}", app.sim.stats());

    // The client's bridge log: authorize answered, onAuthorized delivered,
    // and the code itself never shown.
    browser
        .client
        .enter_parent_frame()
        .await
        .expect("the host page");
    let calls = browser
        .wait_text("calls", "the authorize calls", |t| {
            t.contains("event onAuthorized")
        })
        .await;
    assert!(calls.contains("authorize ok"), "{calls}");
    assert!(!calls.contains("\"code\""), "{calls}");
    browser.enter_app_frame().await;
    assert_clean(&browser).await;
    browser.close().await;
    app.shutdown().await;
}

#[tokio::test]
async fn an_api_the_page_did_not_request_in_config_is_refused_with_the_sdks_own_error() {
    let app = spawn().await;
    let browser = Browser::start(PANEL.0, PANEL.1).await;
    open_in_zoom(&browser, &app, "").await;
    wait_in_zoom(&browser).await;
    // getAppContext is in the page's config; getUserContext is not.
    let outcome = |api: &'static str| {
        let script = format!(
            "const done = arguments[arguments.length - 1];
             window.zoomSdk.{api}().then(
               (r) => done({{ ok: r }}),
               (e) => done({{ error: {{ type: e.constructor.name, code: e.code,
                                      requestId: e.requestId, message: e.message }} }}));"
        );
        let client = browser.client.clone();
        async move {
            client
                .execute_async(&script, vec![])
                .await
                .expect("the SDK call")
        }
    };
    let allowed = outcome("getAppContext").await;
    assert!(allowed["ok"]["context"].is_string(), "{allowed}");
    let refused = outcome("getUserContext").await;
    let error = &refused["error"];
    assert_eq!(error["type"], "ZoomApiError", "{refused}");
    assert_eq!(error["code"], "80002", "{refused}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("No Permission for this API")),
        "{refused}"
    );
    // The SDK's own request id: "id" and 32 hex digits.
    let id = error["requestId"].as_str().expect("a request id");
    assert!(
        id.len() == 34 && id.starts_with("id") && id[2..].chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    browser
        .client
        .enter_parent_frame()
        .await
        .expect("the host page");
    let calls = browser
        .wait_text("calls", "the refusal", |t| t.contains("getUserContext"))
        .await;
    assert!(calls.contains("getUserContext 80002"), "{calls}");
    browser.close().await;
    app.shutdown().await;
}

#[tokio::test]
async fn in_demo_mode_the_page_runs_inside_the_simulated_client_on_the_offline_stand_in() {
    let app = TestApp::spawn_demo().await;
    // Demo mode must work offline: its simulator serves the stand-in.
    let sdk = app
        .client
        .get(format!("{}/sim/appssdk.js", app.sim_base))
        .send()
        .await
        .expect("the SDK script")
        .text()
        .await
        .expect("text");
    assert!(
        sdk.starts_with("/* Stand-in for the Zoom Apps SDK"),
        "{sdk:.80}"
    );
    let browser = Browser::start(PANEL.0, PANEL.1).await;
    open_in_zoom(&browser, &app, "").await;
    wait_in_zoom(&browser).await;
    browser
        .wait_text("live", "a live feed", |t| t == "Live")
        .await;
    assert_clean(&browser).await;
    browser.close().await;
    app.shutdown().await;
}
