//! The whole flow against the simulator: webhooks in, RTMS sockets out,
//! frames counted, status on SSE, stop and shutdown close everything.

use std::time::Duration;

use crate::support::rig::stat;
use crate::support::{Options, SseRead, TestApp, WAIT, eventually};

async fn start_engagement(app: &TestApp) -> String {
    let id = app.sim.create_engagement().await.expect("engagement");
    eventually("engagement tracked by the app", || async {
        app.active_ids().await.contains(&id).then_some(())
    })
    .await;
    // Stored first, then announced on the bus (view, then status line).
    eventually("engagement announced", || async {
        app.status_messages(Some(&id))
            .await
            .iter()
            .any(|m| m == "Engagement started")
            .then_some(())
    })
    .await;
    id
}

#[tokio::test]
async fn full_flow_counts_frames_and_closes_sockets_on_stop() {
    let app = TestApp::spawn().await;
    let id = start_engagement(&app).await;
    let mut feed = app.events(Some(&id)).await;
    let snapshot = feed.next().await.expect("snapshot");
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(snapshot.data["engagements"][0]["state"], "active");

    let stream_id = app.sim.start_rtms(&id).await.expect("rtms start");
    let starting = feed.wait_for_status("Starting RTMS connection").await;
    assert_eq!(starting.data["engagement_id"], id.as_str());
    feed.wait_for_status("Received 50 audio chunks").await;
    let view = feed
        .wait_for("a stream view with both channels", |ev| {
            ev.event == "stream"
                && ev.data["channels"].as_array().is_some_and(|c| {
                    c.len() == 2 && c.iter().all(|c| c["frames"].as_u64() > Some(0))
                })
        })
        .await;
    assert_eq!(view.data["rtms_stream_id"], stream_id.as_str());
    assert_eq!(view.data["state"], "streaming");
    assert!(app.state.rtms.is_running(&stream_id));
    assert!(stat(&app, "/signaling/open") >= 1, "{}", app.sim.stats());
    assert!(stat(&app, "/media/open") >= 1, "{}", app.sim.stats());

    app.sim.stop_rtms(&id).await.expect("rtms stop");
    feed.wait_for_status("RTMS stopped").await;
    eventually("sockets closed", || async {
        (stat(&app, "/signaling/open") == 0 && stat(&app, "/media/open") == 0).then_some(())
    })
    .await;
    eventually("session gone", || async {
        (!app.state.rtms.is_running(&stream_id)).then_some(())
    })
    .await;
    let lines = app.status_events(Some(&id)).await;
    let messages: Vec<&str> = lines["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(
        messages.first(),
        Some(&"RTMS stopped"),
        "newest first: {messages:?}"
    );
    assert!(messages.contains(&"Received 50 audio chunks"));
    assert!(messages.contains(&"Starting RTMS connection"));
    app.shutdown().await;
}

#[tokio::test]
async fn keep_alives_are_answered_on_every_socket() {
    let app = TestApp::spawn_with(Options {
        keepalive: Duration::from_millis(100),
        ..Options::default()
    })
    .await;
    let id = start_engagement(&app).await;
    let mut feed = app.events(Some(&id)).await;
    app.sim.start_rtms(&id).await.expect("rtms start");
    feed.wait_for_status("Received 50 audio chunks").await;
    // The simulator offers a transcript URL, so the app holds three sockets;
    // each of them must have answered, not just one of them many times.
    eventually("keep-alives answered on every socket", || async {
        let on = |socket: &str| stat(&app, &format!("/keepalives/answered_by_socket/{socket}"));
        (stat(&app, "/keepalives/answered") >= 4
            && ["signaling", "audio", "transcript"]
                .into_iter()
                .all(|socket| on(socket) >= 1))
        .then_some(())
    })
    .await;
    // The stream is still healthy: every request got its answer.
    assert!(app.state.rtms.active_streams() == 1);
    app.shutdown().await;
}

#[tokio::test]
async fn ending_the_engagement_stops_the_stream() {
    let app = TestApp::spawn().await;
    let id = start_engagement(&app).await;
    let mut feed = app.events(Some(&id)).await;
    app.sim.start_rtms(&id).await.expect("rtms start");
    feed.wait_for_status("Received 50 audio chunks").await;
    app.sim.end_engagement(&id).await.expect("end");
    feed.wait_for_status("RTMS stopped").await;
    feed.wait_for("engagement ended", |ev| {
        ev.event == "engagement" && ev.data["state"] == "ended"
    })
    .await;
    let active = app.active().await;
    assert_eq!(active["active"], false);
    app.shutdown().await;
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_by_the_rtms_server_and_reported() {
    let app = TestApp::spawn_with(Options {
        tweak: |args| args.credentials.client_secret = Some("not-the-client-secret".into()),
        ..Options::default()
    })
    .await;
    let id = start_engagement(&app).await;
    let mut feed = app.events(Some(&id)).await;
    app.sim.start_rtms(&id).await.expect("rtms start");
    let err = feed
        .wait_for("a refusal", |ev| {
            ev.event == "status" && ev.data["type"] == "error"
        })
        .await;
    let message = err.data["message"].as_str().expect("message");
    assert!(message.contains("INVALID_SIGNATURE (3)"), "{message}");
    feed.wait_for_status("RTMS stopped").await;
    assert_eq!(app.state.rtms.active_streams(), 0);
    app.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_sse_streams_and_closes_rtms_sockets() {
    let mut app = TestApp::spawn().await;
    let id = start_engagement(&app).await;
    let mut feed = app.events(Some(&id)).await;
    app.sim.start_rtms(&id).await.expect("rtms start");
    feed.wait_for_status("Received 50 audio chunks").await;
    app.stop_app().await;
    eventually("sockets closed by shutdown", || async {
        (stat(&app, "/signaling/open") == 0 && stat(&app, "/media/open") == 0).then_some(())
    })
    .await;
    // The feed ends instead of hanging: events still queued may come
    // first, but then the stream must end — a quiet, open feed fails.
    let mut ended = false;
    for _ in 0..1000 {
        match feed.read_within(WAIT).await {
            SseRead::Event(_) => continue,
            SseRead::Ended => {
                ended = true;
                break;
            }
            SseRead::TimedOut => panic!("the SSE stream stayed open {WAIT:?} after shutdown"),
        }
    }
    assert!(ended, "SSE stream ended on shutdown");
    app.shutdown().await;
}

#[tokio::test]
async fn demo_mode_reaches_fifty_chunks_on_its_own() {
    let app = TestApp::spawn_demo().await;
    let health = app.health().await;
    assert_eq!(health["mode"], "demo");
    let mut feed = app.events(None).await;
    feed.wait_for_status("Starting RTMS connection").await;
    feed.wait_for_status("Received 50 audio chunks").await;
    app.shutdown().await;
}

#[tokio::test]
async fn stream_terminated_on_signaling_stops_the_session_without_the_webhook() {
    let app = TestApp::spawn().await;
    let id = start_engagement(&app).await;
    let mut feed = app.events(Some(&id)).await;
    let stream_id = app.sim.start_rtms(&id).await.expect("rtms start");
    feed.wait_for_status("Received 50 audio chunks").await;
    // From now on Zoom's webhooks cannot reach the app: a closed port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    app.sim
        .set_app_url(url::Url::parse(&format!("http://127.0.0.1:{closed}")).expect("url"));
    app.sim.stop_rtms(&id).await.expect("rtms stop");
    feed.wait_for_status("RTMS stopped").await;
    eventually("session gone", || async {
        (!app.state.rtms.is_running(&stream_id)).then_some(())
    })
    .await;
    assert!(
        stat(&app, "/webhooks/failed") >= 1,
        "the stopped webhook was not delivered: {}",
        app.sim.stats()
    );
    app.shutdown().await;
}
