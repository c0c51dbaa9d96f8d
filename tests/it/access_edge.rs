//! Access rules at the edges: control on someone else's engagement,
//! cross-site requests, login CSRF, a lagging feed, the rate limit and demo
//! mode. The connection limits are `edge_limits`'s.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::install::*;
use crate::support::{Options, Sse, SseRead, TestApp, WAIT};

fn rest_total(app: &TestApp) -> u64 {
    app.sim.stats()["rest_calls"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_on_someone_elses_engagement_is_refused_and_nothing_reaches_zoom() {
    let app = TestApp::spawn().await;
    let ann = app.sim.default_user();
    let bob = app.sim.create_user_in(Some(&ann.account_id), "Member");
    let boss = app.sim.create_user_in(Some(&ann.account_id), "Owner");
    let ann_cookie = install(&app, None).await;
    let bob_cookie = install(&app, Some(&bob.user_id)).await;
    let boss_cookie = install(&app, Some(&boss.user_id)).await;
    let anns = new_engagement(&app, None).await;

    let before = rest_total(&app);
    let (code, body) = app.stop_rtms(Some(&bob_cookie), &anns).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "another agent: {body}");
    let (code, body) = app.stop_rtms(Some(&boss_cookie), &anns).await;
    assert_eq!(
        code,
        StatusCode::FORBIDDEN,
        "a supervisor watches only: {body}"
    );
    assert!(
        body["error"].as_str().unwrap_or("").contains("agent"),
        "{body}"
    );
    let (code, body) = app.stop_rtms(Some(&bob_cookie), "NOT-AN-ENGAGEMENT").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    let operator = app
        .operator
        .post(app.url("/api/zoom/rtms/control"))
        .json(&json!({"engagementId": anns, "action": "stop"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(
        operator.status(),
        StatusCode::FORBIDDEN,
        "the operator is read-only"
    );
    assert_eq!(rest_total(&app), before, "the simulator saw no REST call");

    let (code, body) = app.stop_rtms(Some(&ann_cookie), &anns).await;
    assert_eq!(code, StatusCode::OK, "her own: {body}");
    assert_eq!(rest_total(&app), before + 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_control_is_refused_and_the_stream_keeps_running() {
    let app = TestApp::spawn().await;
    let cookie = install(&app, None).await;
    let engagement = new_engagement(&app, None).await;
    let (code, body) = app.start_rtms(Some(&cookie), &engagement).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let mut feed = app.events(Some(&engagement)).await;
    feed.wait_for_status("Received 50 audio chunks").await;
    let before = rest_total(&app);

    let stop = json!({"engagementId": engagement, "action": "stop"}).to_string();
    let attempts: [(&str, &[(&str, &str)]); 4] = [
        (
            "another site's page",
            &[
                ("content-type", "application/json"),
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        ),
        (
            "a form-like text/plain body",
            &[
                ("content-type", "text/plain"),
                ("origin", app.base.as_str()),
                ("sec-fetch-site", "same-origin"),
            ],
        ),
        ("no content type", &[("sec-fetch-site", "same-origin")]),
        (
            "a look-alike Zoom origin",
            &[
                ("content-type", "application/json"),
                ("origin", "https://zoom.us.evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        ),
    ];
    for (what, headers) in attempts {
        let mut req = app
            .state
            .http
            .post(app.url("/api/zoom/rtms/control"))
            .header("cookie", &cookie)
            .body(stop.clone());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("POST");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{what}");
        let body: Value = resp.json().await.expect("json");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {body}"
        );
    }
    assert_eq!(rest_total(&app), before, "nothing was sent to Zoom");
    assert_eq!(app.state.rtms.active_streams(), 1, "the stream still runs");
    feed.wait_for_status("Received 100 audio chunks").await;

    // The Zoom web client's origin is trusted.
    let resp = app
        .state
        .http
        .post(app.url("/api/zoom/rtms/control"))
        .header("cookie", &cookie)
        .header("content-type", "application/json")
        .header("origin", "https://us05web.zoom.us")
        .header("sec-fetch-site", "cross-site")
        .body(stop)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::OK);
    feed.wait_for_status("RTMS stopped").await;

    // The context route is a write too: a cross-site page cannot sign a
    // browser in with its own token.
    let ctx = app
        .client
        .get(app.url("/api/context"))
        .query(&[(
            "token",
            app.sim.app_context(&app.sim.default_user().user_id),
        )])
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("GET");
    assert_eq!(ctx.status(), StatusCode::FORBIDDEN);
    assert!(ctx.headers().get("set-cookie").is_none());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_with_another_browsers_state_or_none_leaves_the_browser_signed_out() {
    let app = TestApp::spawn().await;
    // The attacker starts an install in their browser and stops at the callback.
    let (authorize, attackers_nonce) = begin_install_in(&app).await;
    let callback = approve(&app, authorize, None).await;
    // The victim's browser is sent there: no nonce cookie, or its own.
    let (_, victims_nonce) = begin_install_in(&app).await;
    for cookie in [None, Some(victims_nonce.as_str())] {
        let landing = land_in(&app, &callback, cookie).await;
        assert!(landing.cookie.is_none(), "signed in: {landing:?}");
        assert_eq!(
            landing.reason().as_deref(),
            Some("state_not_for_this_browser")
        );
    }
    // The state is still good in the browser that started it.
    let landing = land_in(&app, &callback, Some(&attackers_nonce)).await;
    assert!(
        landing.succeeded() && landing.cookie.is_some(),
        "{landing:?}"
    );

    // A Zoom-initiated (state-less) install stores tokens, signs no one in.
    let other = app.sim.create_user();
    let callback = zoom_initiated_callback(&app, Some(&other.user_id)).await;
    let landing = land(&app, &callback).await;
    assert!(landing.succeeded(), "{landing:?}");
    assert!(landing.cookie.is_none(), "{landing:?}");
    assert!(
        app.state
            .store
            .load_tokens(&other.account_id, &other.user_id)
            .await
            .expect("load")
            .is_some()
    );
    // An in-client exchange with a state from another browser is refused.
    let resp = app.get_as("/api/auth/challenge", None).await;
    let state = resp.json::<Value>().await.expect("json")["state"].clone();
    let resp = app
        .state
        .http
        .post(app.url("/api/auth/exchange"))
        .json(&json!({"code": "abc", "state": state}))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get("set-cookie").is_none());
    app.shutdown().await;
}

/// A feed that falls behind gets a fresh snapshot — only the caller's part —
/// and continues after it: nothing twice, nothing foreign.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lagging_feed_gets_a_filtered_snapshot_and_nothing_twice() {
    let app = TestApp::spawn().await;
    let bob = app.sim.create_user();
    let cookie = install(&app, None).await;
    let mine = new_engagement(&app, None).await;
    let theirs = new_engagement(&app, Some(&bob.user_id)).await;
    let mut feed = app.events_as(&cookie).await;
    let first = feed.next().await.expect("snapshot");
    assert_eq!(first.event, "snapshot");

    // Far more than the bus keeps and the socket buffers hold, while the
    // reader sleeps: the server-side subscriber must lag.
    let bus = &app.state.bus;
    let padding = "x".repeat(1000);
    for i in 0..20_000 {
        bus.status(
            Some(&mine),
            zcc_rtms::status::Level::Info,
            format!("mine {i} {padding}"),
        );
        if i % 100 == 0 {
            bus.transcript(zcc_rtms::status::TranscriptLine {
                engagement_id: theirs.clone(),
                rtms_stream_id: "S".into(),
                channel_id: "1".into(),
                role: "caller".into(),
                text: format!("secret {i}"),
                timestamp: 0,
            });
        }
    }
    let no_foreign = |ev: &crate::support::SseEvent| {
        let raw = ev.data.to_string();
        assert!(
            !raw.contains(&theirs) && !raw.contains("secret"),
            "foreign data in {}",
            ev.event
        );
    };

    // The reader catches up. Every snapshot after the first comes from a
    // lag, and what follows it must be newer than it: the feed re-subscribed
    // instead of replaying what the snapshot already holds.
    let mut lags = 0;
    let mut newest_in_snapshot = 0u64;
    let mut last_line = 0u64;
    let mut markers_sent = false;
    let deadline = Instant::now() + WAIT * 4;
    loop {
        assert!(Instant::now() < deadline, "the feed did not catch up");
        let ev = match feed.read_within(Duration::from_millis(500)).await {
            SseRead::Event(ev) => ev,
            SseRead::Ended => panic!("the feed ended while catching up"),
            SseRead::TimedOut => {
                // Quiet: caught up. Now lines the feed has never seen.
                assert!(!markers_sent, "the markers never arrived");
                for i in 0..5 {
                    bus.status(
                        Some(&mine),
                        zcc_rtms::status::Level::Info,
                        format!("marker {i}"),
                    );
                }
                markers_sent = true;
                continue;
            }
        };
        no_foreign(&ev);
        match ev.event.as_str() {
            "snapshot" => {
                lags += 1;
                let lines = ev.data["status"].as_array().expect("status");
                assert!(!lines.is_empty(), "the snapshot has the agent's lines");
                newest_in_snapshot = lines
                    .iter()
                    .filter_map(|l| l["id"].as_u64())
                    .max()
                    .unwrap_or(0);
                last_line = newest_in_snapshot;
                if lines.iter().any(|l| l["message"] == "marker 4") {
                    break;
                }
            }
            "status" => {
                let id = ev.data["id"].as_u64().expect("id");
                assert!(
                    id > last_line,
                    "line {id} after {last_line} (snapshot up to {newest_in_snapshot}): sent twice or out of order"
                );
                last_line = id;
                if ev.data["message"] == "marker 4" {
                    break;
                }
            }
            _ => {}
        }
    }
    assert!(lags >= 1, "the feed lagged");
    println!("lagging feed: {lags} fresh snapshot(s), nothing twice, nothing foreign");
    app.shutdown().await;
}

#[tokio::test]
async fn anonymous_writes_beyond_the_rate_limit_get_429_with_retry_after() {
    let app = TestApp::spawn_with(Options {
        tweak: |a| {
            a.rate_limit_per_minute = Some("6".into());
            a.rate_limit_burst = Some("3".into());
        },
        ..Options::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(app.get_as("/api/auth/challenge", None).await.status(), 200);
    }
    let refused = app.get_as("/api/auth/install", None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=10).contains(&wait), "{wait}");
    // Reading routes are not limited.
    assert_eq!(app.get("/health").await.status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn demo_mode_is_open_and_says_so() {
    let app = TestApp::spawn_demo().await;
    let health = app
        .get("/health")
        .await
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(health["mode"], "demo");
    assert!(
        health["access"].as_str().unwrap_or("").contains("open"),
        "{health}"
    );
    let mut feed = Sse::open(&app.url("/api/events")).await;
    assert_eq!(feed.next().await.expect("snapshot").event, "snapshot");
    assert_eq!(app.get("/api/engagement/active").await.status(), 200);
    app.shutdown().await;
}
