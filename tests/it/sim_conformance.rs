//! Conformance: Zoom's official RTMS SDK (PyPI `rtms` 1.1.0, a closed C SDK
//! inside) joins streams of our simulator over wss with certificate
//! verification on. The venv lives in `target/conformance-venv`, made once
//! and reused; pip's cache keeps re-creation cheap.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::sdks::Sdk;
use crate::support::sim::*;

/// An audio event's bytes are one of the two channels' frames at its timestamp.
fn is_sent_frame(stream_id: &str, e: &Value) -> bool {
    let ts = e["ts"].as_i64().expect("timestamp");
    let data = base64::engine::general_purpose::STANDARD
        .decode(e["b64"].as_str().expect("data"))
        .expect("base64");
    ["1", "2"].iter().any(|c| {
        zoom_sim::audio::expected_frame(stream_id, c, ts).as_deref() == Some(data.as_slice())
    })
}

#[tokio::test]
async fn the_official_sdk_joins_over_verified_wss_receives_audio_and_transcripts_and_leaves_on_stop()
 {
    let sim = TestSim::start(|c| {
        c.tls = true;
        c.keepalive = Duration::from_millis(500);
    })
    .await;
    let eid = sim.handle.create_engagement().await.expect("engagement");
    let sid = sim.handle.start_rtms(&eid).await.expect("stream");
    let mut sdk = Sdk::join(&sim, &eid, &sid, sim.cfg.client_secret.expose()).await;
    let mut seen = Vec::new();
    let join = sdk.next("join", Duration::from_secs(30), &mut seen).await;
    assert_eq!(join["reason"], 0, "join confirmed: {join}");

    let mut audio = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while audio.len() < 100 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        audio.push(sdk.next("audio", left, &mut seen).await);
    }
    for e in &audio {
        assert_eq!(e["size"], 640);
        assert!(
            is_sent_frame(&sid, e),
            "the SDK got exactly the bytes we sent: {}",
            e["ts"]
        );
    }
    let transcript = match seen.iter().find(|e| e["type"] == "transcript") {
        Some(t) => t.clone(),
        None => {
            sdk.next("transcript", Duration::from_secs(10), &mut seen)
                .await
        }
    };
    assert!(
        zoom_sim::audio::SCRIPT.contains(&transcript["text"].as_str().expect("text")),
        "{transcript}"
    );
    eventually("keep-alives answered by the SDK", || {
        sim.handle.stats_snapshot().keepalives.answered >= 2
    })
    .await;
    let stats = sim.handle.stats_snapshot();
    assert_eq!(
        stats.media_handshakes.get("0"),
        Some(&2),
        "audio and transcript sockets"
    );

    sim.handle.stop_rtms(&eid).await.expect("stop");
    let leave = sdk.next("leave", Duration::from_secs(15), &mut seen).await;
    assert_eq!(leave["reason"], 25, "left with the TERMINATED reason");
    sim.stop().await;
}

#[tokio::test]
async fn the_official_sdk_gets_join_code_3_for_a_bad_client_secret() {
    let sim = TestSim::start(|c| c.tls = true).await;
    let eid = sim.handle.create_engagement().await.expect("engagement");
    let sid = sim.handle.start_rtms(&eid).await.expect("stream");
    let mut sdk = Sdk::join(&sim, &eid, &sid, "not-the-secret").await;
    let join = sdk
        .next("join", Duration::from_secs(30), &mut Vec::new())
        .await;
    assert_eq!(join["reason"], 3, "{join}");
    assert_eq!(
        sim.handle.stats_snapshot().signaling_handshakes.get("3"),
        Some(&1)
    );
    sim.stop().await;
}

#[tokio::test]
async fn the_official_sdk_rejoins_after_a_dropped_tcp_connection() {
    let sim = TestSim::start(|c| c.tls = true).await;
    let eid = sim.handle.create_engagement().await.expect("engagement");
    let sid = sim.handle.start_rtms(&eid).await.expect("stream");
    let mut sdk = Sdk::join(&sim, &eid, &sid, sim.cfg.client_secret.expose()).await;
    let mut seen = Vec::new();
    assert_eq!(
        sdk.next("join", Duration::from_secs(30), &mut seen).await["reason"],
        0
    );
    sdk.next("audio", Duration::from_secs(10), &mut seen).await;

    sim.handle
        .apply_faults(
            serde_json::from_value(json!({"drop": {"engagement_id": eid, "mode": "abort"}}))
                .expect("faults"),
        )
        .expect("applies");
    eventually("a second signaling handshake", || {
        sim.handle
            .stats_snapshot()
            .signaling_handshakes
            .get("0")
            .is_some_and(|n| *n >= 2)
    })
    .await;
    // Audio flows again after the rejoin.
    let cut = zcc_rtms::time::now_ms();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let e = sdk.next("audio", left, &mut seen).await;
        if e["ts"].as_i64().is_some_and(|ts| ts > cut) {
            assert!(is_sent_frame(&sid, &e));
            break;
        }
    }
    assert!(
        !seen.iter().any(|e| e["type"] == "leave"),
        "no leave: {seen:?}"
    );
    sdk.leave().await;
    sim.stop().await;
}
