//! The stream survives what Zoom's side does to it: dropped sockets, an
//! interrupted webhook, a fail-over re-send, duplicate-signaling refusals,
//! and a server that goes silent.

use serde_json::json;
use zoom_sim::faults::FaultRequest;

use crate::support::rig::stat;
use crate::support::{Options, TestApp, eventually};

fn faults(v: serde_json::Value) -> FaultRequest {
    serde_json::from_value(v).expect("fault request")
}

async fn streaming(app: &TestApp) -> (String, crate::support::Sse) {
    let id = app.sim.create_engagement().await.expect("engagement");
    let mut feed = app.events(Some(&id)).await;
    app.sim.start_rtms(&id).await.expect("rtms start");
    feed.wait_for_status("Received 50 audio chunks").await;
    (id, feed)
}

/// Wait until the simulator saw a new signaling handshake and exactly one
/// signaling socket is open again.
async fn rejoined(app: &TestApp, before: u64, what: &str) {
    eventually(what, || async {
        (stat(app, "/signaling/total") > before && stat(app, "/signaling/open") == 1).then_some(())
    })
    .await;
}

/// Wait until the stream has received `more` frames beyond what it has now.
async fn frames_keep_coming(app: &TestApp, feed: &mut crate::support::Sse, more: u64) {
    let base = app
        .state
        .rtms
        .counters()
        .frames
        .load(std::sync::atomic::Ordering::Relaxed);
    feed.wait_for("frames after recovery", |ev| {
        ev.event == "stream" && ev.data["state"] == "streaming"
    })
    .await;
    eventually("frames flowing again", || async {
        let now = app
            .state
            .rtms
            .counters()
            .frames
            .load(std::sync::atomic::Ordering::Relaxed);
        (now >= base + more).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_signaling_socket_reset_without_close_frame_is_reconnected() {
    let app = TestApp::spawn().await;
    let (id, mut feed) = streaming(&app).await;
    let before = stat(&app, "/signaling/total");
    app.sim
        .apply_faults(faults(
            json!({"drop": {"engagement_id": id, "socket": "signaling", "mode": "abort"}}),
        ))
        .expect("fault");
    feed.wait_for("a reconnect notice", |ev| {
        ev.event == "status"
            && ev.data["message"]
                .as_str()
                .is_some_and(|m| m.contains("reconnecting"))
    })
    .await;
    rejoined(&app, before, "a second signaling handshake").await;
    frames_keep_coming(&app, &mut feed, 100).await;
    assert_eq!(app.state.rtms.active_streams(), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_media_socket_closed_by_the_server_is_reopened_alone() {
    let app = TestApp::spawn().await;
    let (id, mut feed) = streaming(&app).await;
    let signaling_before = stat(&app, "/signaling/total");
    let media_before = stat(&app, "/media/total");
    app.sim
        .apply_faults(faults(json!({"drop": {"engagement_id": id, "socket": "media", "mode": "close", "code": 1011}})))
        .expect("fault");
    feed.wait_for("a media reconnect notice", |ev| {
        ev.event == "status"
            && ev.data["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("RTMS media connection lost"))
    })
    .await;
    eventually("a new media socket", || async {
        (stat(&app, "/media/total") > media_before).then_some(())
    })
    .await;
    frames_keep_coming(&app, &mut feed, 100).await;
    assert_eq!(
        stat(&app, "/signaling/total"),
        signaling_before,
        "signaling was kept: {}",
        app.sim.stats()
    );
    app.shutdown().await;
}

#[tokio::test]
async fn an_interrupted_stream_is_reconnected_from_scratch() {
    let app = TestApp::spawn().await;
    let (id, mut feed) = streaming(&app).await;
    let before = stat(&app, "/signaling/total");
    app.sim
        .apply_faults(faults(json!({"interrupt": id})))
        .expect("fault");
    rejoined(&app, before, "a new signaling connection").await;
    frames_keep_coming(&app, &mut feed, 100).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_re_sent_started_webhook_restarts_the_connection_once() {
    let app = TestApp::spawn().await;
    let (id, mut feed) = streaming(&app).await;
    let before = stat(&app, "/signaling/total");
    app.sim
        .apply_faults(faults(
            json!({"resend_started": id, "duplicate_signaling": "replace"}),
        ))
        .expect("fault");
    feed.wait_for_status("RTMS server changed, reconnecting")
        .await;
    eventually("one new signaling connection", || async {
        (stat(&app, "/signaling/total") == before + 1 && stat(&app, "/signaling/open") == 1)
            .then_some(())
    })
    .await;
    frames_keep_coming(&app, &mut feed, 100).await;
    assert_eq!(app.state.rtms.active_streams(), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_duplicate_signaling_refusal_on_connect_is_retried() {
    let app = TestApp::spawn().await;
    let id = app.sim.create_engagement().await.expect("engagement");
    let mut feed = app.events(Some(&id)).await;
    app.sim
        .apply_faults(faults(
            json!({"refuse_handshakes": {"count": 1, "status_code": 8}}),
        ))
        .expect("fault");
    app.sim.start_rtms(&id).await.expect("rtms start");
    feed.wait_for_status("Received 50 audio chunks").await;
    assert!(
        stat(&app, "/signaling_handshakes/8") >= 1,
        "{}",
        app.sim.stats()
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_server_that_goes_silent_is_left_and_rejoined() {
    let app = TestApp::spawn_with(Options {
        tweak: |args| args.rtms_idle_timeout_ms = Some("700".into()),
        ..Options::default()
    })
    .await;
    let (_id, mut feed) = streaming(&app).await;
    let before = stat(&app, "/signaling/total");
    app.sim
        .apply_faults(faults(json!({"stop_answering": true})))
        .expect("fault");
    feed.wait_for("the silence noticed", |ev| {
        ev.event == "status"
            && ev.data["message"]
                .as_str()
                .is_some_and(|m| m.contains("nothing heard from Zoom"))
    })
    .await;
    app.sim
        .apply_faults(faults(json!({"stop_answering": false})))
        .expect("fault");
    eventually("a rejoin", || async {
        (stat(&app, "/signaling/total") > before).then_some(())
    })
    .await;
    frames_keep_coming(&app, &mut feed, 100).await;
    app.shutdown().await;
}
