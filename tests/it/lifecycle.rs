//! State that never grows without bound: engagements never reported ended
//! are closed after their maximum age, with a status line.

use serde_json::json;

use crate::helpers::{Options, TestApp, eventually, now_secs};

#[tokio::test]
async fn an_engagement_never_reported_ended_is_closed_after_its_maximum_age() {
    let app = TestApp::spawn_with(Options {
        tweak: |a| a.engagement_max_age_secs = Some("1".into()),
        ..Options::default()
    })
    .await;
    let resp = app
        .post_webhook(&json!({
            "event": "contact_center.engagement_started",
            "event_ts": now_secs() * 1000,
            "payload": {"account_id": "acct1", "object": {"engagement_id": "E-forever"}}
        }))
        .await;
    assert_eq!(resp.status(), 200);
    eventually("the engagement is active", || async {
        let v = app.get_json("/api/engagement/active").await;
        (v["engagementId"] == "E-forever").then_some(())
    })
    .await;
    let lines = eventually("the engagement is closed with a status line", || async {
        let v = app
            .get_json("/api/webhooks/events?engagement_id=E-forever")
            .await;
        let lines: Vec<String> = v["events"]
            .as_array()?
            .iter()
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .collect();
        lines
            .iter()
            .any(|m| m.starts_with("Engagement closed: no end reported"))
            .then_some(lines)
    })
    .await;
    assert!(
        lines.contains(&"Engagement started".to_owned()),
        "{lines:?}"
    );
    let v = app.get_json("/api/engagement/active").await;
    assert_eq!(v["active"], false, "{v}");
    app.shutdown().await;
}
