//! The simulator's webhooks: Zoom's signature and headers, order, retries.

use serde_json::json;

use crate::support::sim::*;

#[tokio::test]
async fn engagement_started_is_signed_exactly_as_zoom_signs() {
    let secret = "test_webhook_secret".to_string();
    let mut rx = Receiver::start(0, secret.clone()).await;
    let sim = TestSim::start(|c| {
        c.app_url = Some(rx.url.clone());
        c.secret_token = secret.clone().into();
    })
    .await;
    let id = sim.handle.create_engagement().await.expect("engagement");
    let r = rx.next().await;
    let h = |n: &str| {
        r.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(h("content-type"), "application/json; charset=utf-8");
    assert_eq!(h("user-agent"), "Zoom Marketplace/1.0a");
    assert_eq!(h("clientid"), sim.cfg.client_id);
    let ts: i64 = h("x-zm-request-timestamp").parse().expect("seconds");
    // The app's own verifier accepts it: two independent implementations agree.
    zcc_rtms::webhook::verify(
        &secret,
        Some(&h("x-zm-request-timestamp")),
        Some(&h("x-zm-signature")),
        &r.body,
        ts,
    )
    .expect("signature verifies");
    let body = std::str::from_utf8(&r.body).expect("utf8");
    assert!(
        !body.contains('\n') && !body.contains(": "),
        "compact JSON: {body}"
    );
    let v = r.json();
    assert_eq!(v["event"], "contact_center.engagement_started");
    assert!(
        v["event_ts"]
            .as_i64()
            .is_some_and(|t| t > 1_600_000_000_000),
        "milliseconds"
    );
    assert_eq!(v["payload"]["object"]["engagement_id"], id.as_str());
    assert_eq!(
        v["payload"]["account_id"],
        sim.handle.default_user().account_id.as_str()
    );
    sim.stop().await;
}

#[tokio::test]
async fn rtms_webhooks_arrive_in_order_with_the_signaling_url() {
    let mut rx = Receiver::start(0, String::new()).await;
    let sim = TestSim::start(|c| c.app_url = Some(rx.url.clone())).await;
    let id = sim.handle.create_engagement().await.expect("engagement");
    let sid = sim.handle.start_rtms(&id).await.expect("start");
    sim.handle.stop_rtms(&id).await.expect("stop");
    sim.handle.end_engagement(&id).await.expect("end");
    let events: Vec<_> = [
        rx.next().await,
        rx.next().await,
        rx.next().await,
        rx.next().await,
    ]
    .iter()
    .map(|r| r.json())
    .collect();
    let names: Vec<_> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "contact_center.engagement_started",
            "contact_center.voice_rtms_started",
            "contact_center.voice_rtms_stopped",
            "contact_center.engagement_ended"
        ]
    );
    let started = &events[1]["payload"];
    assert_eq!(started["engagement_id"], id.as_str());
    assert_eq!(started["rtms_stream_id"], sid.as_str());
    assert_eq!(started["server_urls"], sim.rtms_url.as_str());
    assert_eq!(events[2]["payload"]["stop_reason"], 25);
    sim.stop().await;
}

#[tokio::test]
async fn a_failed_webhook_is_retried_on_the_schedule_and_counted() {
    let mut rx = Receiver::start(2, String::new()).await;
    let sim = TestSim::start(|c| c.app_url = Some(rx.url.clone())).await;
    sim.handle.create_engagement().await.expect("engagement");
    let bodies = [
        rx.next().await.body,
        rx.next().await.body,
        rx.next().await.body,
    ];
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "retries carry the same body"
    );
    eventually("the third attempt counted", || {
        sim.handle.stats_snapshot().webhooks.sent == 1
    })
    .await;
    let s = sim.handle.stats_snapshot();
    assert_eq!(s.webhooks.failed, 2);
    let log = sim.handle.webhook_log();
    assert_eq!(log.iter().map(|d| d.attempt).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(log[0].status, Some(500));
    sim.stop().await;
}

#[tokio::test]
async fn a_webhook_that_keeps_failing_is_given_up_after_the_last_retry() {
    let mut rx = Receiver::start(usize::MAX, String::new()).await;
    let sim = TestSim::start(|c| c.app_url = Some(rx.url.clone())).await;
    sim.handle.create_engagement().await.expect("engagement");
    for _ in 0..3 {
        rx.next().await;
    }
    eventually("given up", || {
        sim.handle.stats_snapshot().webhooks.dropped == 1
    })
    .await;
    assert_eq!(sim.handle.stats_snapshot().webhooks.failed, 3);
    sim.stop().await;
}

#[tokio::test]
async fn duplicate_webhooks_fault_delivers_the_same_webhook_twice() {
    let mut rx = Receiver::start(0, String::new()).await;
    let sim = TestSim::start(|c| c.app_url = Some(rx.url.clone())).await;
    sim.handle
        .apply_faults(serde_json::from_value(json!({"duplicate_webhooks": 1})).expect("faults"))
        .expect("applies");
    sim.handle.create_engagement().await.expect("engagement");
    let (a, b) = (rx.next().await, rx.next().await);
    assert_eq!(a.body, b.body);
    sim.stop().await;
}

#[tokio::test]
async fn url_validation_is_sent_on_request_and_the_answer_checked() {
    let secret = "s3cret-token".to_string();
    let rx = Receiver::start(0, secret.clone()).await;
    let sim = TestSim::start(|c| {
        c.app_url = Some(rx.url.clone());
        c.secret_token = secret.clone().into();
    })
    .await;
    let v = sim.handle.validate_webhook_endpoint().await.expect("sent");
    assert!(v.ok, "{v:?}");
    let resp = sim
        .http()
        .post(format!("{}/sim/webhooks/validate", sim.base_url))
        .send()
        .await
        .expect("http");
    assert_eq!(
        resp.json::<serde_json::Value>().await.expect("json")["ok"],
        true
    );
    sim.stop().await;
}
