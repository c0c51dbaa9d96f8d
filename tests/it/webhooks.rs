//! `POST /api/webhooks/zoom`: signatures, validation, parsing, de-duplication.

use serde_json::{Value, json};

use crate::support::{TestApp, now_secs, sign};

fn engagement_started(id: &str) -> Value {
    crate::support::engagement_started("acct1", id)
}

async fn reason(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.expect("json body");
    body["error"].as_str().expect("error reason").to_owned()
}

#[tokio::test]
async fn webhook_with_good_signature_is_accepted_and_tracked() {
    let app = TestApp::spawn().await;
    let resp = app.post_webhook(&engagement_started("E-good")).await;
    assert_eq!(resp.status(), 200);
    let active = crate::support::eventually("engagement active", || async {
        let v = app.active().await;
        (v["engagementId"] == "E-good").then_some(v)
    })
    .await;
    assert_eq!(active["active"], true);
    // The status line follows the stored engagement onto the bus.
    let events = crate::support::eventually("the status line", || async {
        let v = app.status_events(None).await;
        v["events"][0].is_object().then_some(v)
    })
    .await;
    let first = &events["events"][0];
    assert_eq!(first["message"], "Engagement started");
    assert_eq!(first["engagement_id"], "E-good");
    for key in ["id", "timestamp", "message", "type", "engagement_id"] {
        assert!(first.get(key).is_some(), "seed field {key}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn webhook_with_bad_signature_is_rejected_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&engagement_started("E-bad")).expect("json");
    let ts = now_secs().to_string();
    let resp = app
        .post_webhook_raw(&body, &ts, &sign("not-the-secret", &ts, &body))
        .await;
    assert_eq!(resp.status(), 401);
    assert!(reason(resp).await.contains("signature"));
    let resp = app.post_webhook_raw(&body, &ts, "v0=deadbeef").await;
    assert_eq!(resp.status(), 401);
    // Signed, then tampered with.
    let good = sign(app.sim_cfg.secret_token.expose(), &ts, &body);
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    assert_eq!(
        app.post_webhook_raw(&tampered, &ts, &good).await.status(),
        401
    );
    let active = app.active().await;
    assert_eq!(active["active"], false);
    app.shutdown().await;
}

#[tokio::test]
async fn webhook_with_stale_timestamp_is_rejected() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&engagement_started("E-stale")).expect("json");
    let ts = (now_secs() - 301).to_string();
    let sig = sign(app.sim_cfg.secret_token.expose(), &ts, &body);
    let resp = app.post_webhook_raw(&body, &ts, &sig).await;
    assert_eq!(resp.status(), 401);
    assert!(reason(resp).await.contains("300 s"));
    // Far enough ahead that the seconds passing before the check cannot
    // bring it back inside the window.
    let future = (now_secs() + 330).to_string();
    let sig = sign(app.sim_cfg.secret_token.expose(), &future, &body);
    assert_eq!(
        app.post_webhook_raw(&body, &future, &sig).await.status(),
        401
    );
    app.shutdown().await;
}

#[tokio::test]
async fn webhook_without_signature_headers_is_rejected() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(app.url("/api/webhooks/zoom"))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 401);
    assert!(reason(resp).await.contains("x-zm-request-timestamp"));
    app.shutdown().await;
}

#[tokio::test]
async fn url_validation_is_answered_with_the_hmac_of_the_plain_token() {
    let app = TestApp::spawn().await;
    let resp = app
        .post_webhook(&json!({
            "event": "endpoint.url_validation",
            "event_ts": now_secs() * 1000,
            "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"}
        }))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    let expected = zoom_sim::sign::url_validation_token(
        app.sim_cfg.secret_token.expose(),
        "qgg8vlvZRS6UYooatFL8Aw",
    );
    assert_eq!(body["encryptedToken"], expected);
    app.shutdown().await;
}

#[tokio::test]
async fn malformed_body_is_a_400_with_a_reason() {
    let app = TestApp::spawn().await;
    let ts = now_secs().to_string();
    let secret = app.sim_cfg.secret_token.expose().to_owned();
    for body in [&b"not json"[..], b"[]", br#"{"payload":{}}"#] {
        let resp = app
            .post_webhook_raw(body, &ts, &sign(&secret, &ts, body))
            .await;
        assert_eq!(resp.status(), 400, "{}", String::from_utf8_lossy(body));
        assert!(!reason(resp).await.is_empty());
    }
    let missing = serde_json::to_vec(&json!({
        "event": "contact_center.voice_rtms_started",
        "payload": {"engagement_id": "E"}
    }))
    .expect("json");
    let resp = app
        .post_webhook_raw(&missing, &ts, &sign(&secret, &ts, &missing))
        .await;
    assert_eq!(resp.status(), 400);
    assert!(reason(resp).await.contains("rtms_stream_id"));
    app.shutdown().await;
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let app = TestApp::spawn().await;
    let body = vec![b' '; 70 * 1024];
    let ts = now_secs().to_string();
    let sig = sign(app.sim_cfg.secret_token.expose(), &ts, &body);
    let resp = app.post_webhook_raw(&body, &ts, &sig).await;
    assert_eq!(resp.status(), 413);
    app.shutdown().await;
}

#[tokio::test]
async fn unknown_event_is_acknowledged_and_ignored() {
    let app = TestApp::spawn().await;
    let resp = app
        .post_webhook(&json!({
            "event": "meeting.participant_joined",
            "event_ts": now_secs() * 1000,
            "payload": {"object": {"id": 1}}
        }))
        .await;
    assert_eq!(resp.status(), 200);
    let events = app.status_events(None).await;
    assert!(events["events"].as_array().expect("array").is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn exact_retries_are_dropped() {
    let app = TestApp::spawn().await;
    let event = engagement_started("E-dup");
    let mut answers = Vec::new();
    for _ in 0..3 {
        let resp = app.post_webhook(&event).await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("json");
        answers.push(body["status"].as_str().expect("status").to_owned());
    }
    assert_eq!(answers, ["accepted", "duplicate", "duplicate"]);
    let lines = crate::support::eventually("the start line", || async {
        let v = app.status_events(Some("E-dup")).await;
        let lines = v["events"].as_array().cloned().unwrap_or_default();
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert_eq!(lines.len(), 1);
    app.shutdown().await;
}
