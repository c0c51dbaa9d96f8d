//! The simulator's RTMS server, driven by a raw WebSocket client.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::Engine as _;
use futures_util::SinkExt as _;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::sim::*;

#[tokio::test]
async fn a_client_joins_and_gets_two_channels_of_audio_only_after_ready_ack() {
    let sim = TestSim::start(|_| {}).await;
    let engagement_id = sim.handle.create_engagement().await.expect("engagement");
    let stream_id = sim.handle.start_rtms(&engagement_id).await.expect("stream");
    assert_eq!(stream_id.len(), 32);
    assert!(stream_id.bytes().all(|b| b.is_ascii_hexdigit()));

    let (mut sig, resp) = handshake_signaling(&sim, &engagement_id, &stream_id).await;
    assert_eq!(resp["status_code"], 0);
    assert_eq!(resp["sequence"], 1);
    let urls = &resp["media_server"]["server_urls"];
    for kind in ["audio", "transcript", "video", "all"] {
        assert!(
            urls[kind].as_str().is_some_and(|u| u.starts_with("ws://")),
            "{kind}: {urls}"
        );
    }
    let first_packet = recv_type(&mut sig, 6).await;
    assert_eq!(first_packet["event"]["event_type"], 1);
    assert!(first_packet["event"]["timestamp"].as_i64().is_some());

    let mut media = connect(urls["audio"].as_str().expect("url")).await;
    send(
        &mut media,
        json!({"msg_type": 3, "protocol_version": 1, "sequence": 5, "engagement_id": engagement_id,
               "rtms_stream_id": stream_id, "signature": sim.signature(&engagement_id, &stream_id),
               "media_type": 1, "media_params": {"audio": l16_default()}}),
    )
    .await;
    let m4 = recv_type(&mut media, 4).await;
    assert_eq!(m4["status_code"], 0);
    assert_eq!(m4["payload_encrypted"], false);
    assert_eq!(m4["media_params"]["audio"], l16_default());

    // No media before CLIENT_READY_ACK.
    assert!(
        recv_within(&mut media, Duration::from_millis(200))
            .await
            .is_none()
    );
    send(
        &mut sig,
        json!({"msg_type": 7, "rtms_stream_id": stream_id}),
    )
    .await;
    let active = recv_type(&mut sig, 8).await;
    assert_eq!(active["state"], 1);
    let started = recv_type(&mut sig, 9).await;
    assert_eq!(started["state"], 2);
    assert!(
        started["rtms_session_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(started["timestamp"].as_i64().is_some());

    let mut per_channel: HashMap<String, Vec<i64>> = HashMap::new();
    while per_channel.values().map(Vec::len).sum::<usize>() < 40 {
        let f = recv_type(&mut media, 14).await;
        let c = &f["content"];
        let data = base64::engine::general_purpose::STANDARD
            .decode(c["data"].as_str().expect("data"))
            .expect("base64");
        assert_eq!(data.len(), 640);
        let channel = c["channel_id"].as_str().expect("channel_id").to_string();
        let ts = c["timestamp"].as_i64().expect("timestamp");
        let expected =
            zoom_sim::audio::expected_frame(&stream_id, &channel, ts).expect("known channel");
        assert_eq!(data, expected, "frame bytes are the deterministic signal");
        per_channel.entry(channel).or_default().push(ts);
    }
    let channels: HashSet<&String> = per_channel.keys().collect();
    assert_eq!(channels.len(), 2, "caller and agent: {channels:?}");
    for ts in per_channel.values() {
        assert!(
            ts.windows(2).all(|w| w[1] - w[0] == 20),
            "one frame per channel per 20 ms: {per_channel:?}"
        );
    }
    let stats = sim.handle.stats_snapshot();
    assert!(stats.frames_sent >= 40);
    assert_eq!(stats.signaling_handshakes.get("0"), Some(&1));
    assert_eq!(stats.media_handshakes.get("0"), Some(&1));
    sim.stop().await;
}

#[tokio::test]
async fn bad_signature_unknown_stream_and_duplicate_signaling_get_their_status_codes() {
    let sim = TestSim::start(|_| {}).await;
    let engagement_id = sim.handle.create_engagement().await.expect("engagement");
    let stream_id = sim.handle.start_rtms(&engagement_id).await.expect("stream");

    let mut ws = connect(&sim.rtms_url).await;
    send(&mut ws, json!({"msg_type": 1, "sequence": 3, "engagement_id": engagement_id, "rtms_stream_id": stream_id, "signature": "00".repeat(32)})).await;
    let r = recv_type(&mut ws, 2).await;
    assert_eq!(r["status_code"], 3, "{r}");
    assert_eq!(r["sequence"], 3);

    let mut ws = connect(&sim.rtms_url).await;
    let other = "f".repeat(32);
    send(&mut ws, json!({"msg_type": 1, "sequence": 1, "engagement_id": engagement_id, "rtms_stream_id": other, "signature": sim.signature(&engagement_id, &other)})).await;
    assert_eq!(recv_type(&mut ws, 2).await["status_code"], 2);

    let (_first, ok) = handshake_signaling(&sim, &engagement_id, &stream_id).await;
    assert_eq!(ok["status_code"], 0);
    let (_second, dup) = handshake_signaling(&sim, &engagement_id, &stream_id).await;
    assert_eq!(dup["status_code"], 8);
    assert!(
        dup["reason"]
            .as_str()
            .is_some_and(|r| r.contains("duplicate signal request"))
    );

    let stats = sim.handle.stats_snapshot();
    for code in ["0", "2", "3", "8"] {
        assert_eq!(
            stats.handshakes.get(code),
            Some(&1),
            "code {code}: {:?}",
            stats.handshakes
        );
    }
    sim.stop().await;
}

#[tokio::test]
async fn the_sdk_style_handshake_in_binary_pretty_json_with_meeting_uuid_is_accepted() {
    let sim = TestSim::start(|_| {}).await;
    let engagement_id = sim.handle.create_engagement().await.expect("engagement");
    let stream_id = sim.handle.start_rtms(&engagement_id).await.expect("stream");
    let mut ws = connect(&sim.rtms_url).await;
    let body = serde_json::to_string_pretty(&json!({
        "meeting_uuid": engagement_id, "msg_type": 1, "protocol_version": 1,
        "rtms_client_agent": "rtms_sdk_cpp-.0.20260319-python-rtms",
        "rtms_stream_id": stream_id, "sequence": 1_129_096,
        "signature": sim.signature(&engagement_id, &stream_id),
    }))
    .expect("json")
    .replace("  ", "\t");
    ws.send(Message::Binary(body.into_bytes().into()))
        .await
        .expect("send");
    let r = recv_type(&mut ws, 2).await;
    assert_eq!(r["status_code"], 0, "{r}");
    assert_eq!(r["sequence"], 1_129_096);
    sim.stop().await;
}

#[tokio::test]
async fn bad_audio_params_get_their_status_codes() {
    let sim = TestSim::start(|_| {}).await;
    let engagement_id = sim.handle.create_engagement().await.expect("engagement");
    let stream_id = sim.handle.start_rtms(&engagement_id).await.expect("stream");
    let (_sig, resp) = handshake_signaling(&sim, &engagement_id, &stream_id).await;
    let url = resp["media_server"]["server_urls"]["audio"]
        .as_str()
        .expect("url")
        .to_string();
    for (audio, code) in [
        (json!({"codec": 4}), 22),
        (json!({"send_rate": 30}), 24),
        (json!({"sample_rate": 9}), 20),
        (json!({"channel": 5}), 21),
        (json!({"content_type": 3}), 19),
        (json!({"data_opt": 7}), 23),
    ] {
        let mut m = connect(&url).await;
        send(&mut m, json!({"msg_type": 3, "engagement_id": engagement_id, "rtms_stream_id": stream_id,
            "signature": sim.signature(&engagement_id, &stream_id), "media_type": 1, "media_params": {"audio": audio}})).await;
        assert_eq!(recv_type(&mut m, 4).await["status_code"], code, "{audio}");
    }
    sim.stop().await;
}

#[tokio::test]
async fn keep_alives_carry_a_sequence_on_every_socket_and_answers_are_counted() {
    let sim = TestSim::start(|c| c.keepalive = Duration::from_millis(100)).await;
    let mut j = join(&sim, 1, l16_default()).await;
    for ws in [&mut j.signaling, &mut j.media] {
        let ka = recv_type(ws, 12).await;
        assert!(ka["sequence"].as_i64().is_some_and(|s| s >= 1), "{ka}");
        assert!(ka["timestamp"].as_i64().is_some());
        send(
            ws,
            json!({"msg_type": 13, "timestamp": ka["timestamp"], "sequence": ka["sequence"]}),
        )
        .await;
    }
    eventually("two answered keep-alives", || {
        sim.handle.stats_snapshot().keepalives.answered >= 2
    })
    .await;
    assert!(sim.handle.stats_snapshot().keepalives.sent >= 2);
    sim.stop().await;
}

#[tokio::test]
async fn server_stop_sends_stopped_and_terminated_with_reason_then_closes() {
    let mut rx = Receiver::start(0, String::new()).await;
    let sim = TestSim::start(|c| c.app_url = Some(rx.url.clone())).await;
    let mut j = join(&sim, 1, l16_default()).await;
    recv_type(&mut j.media, 14).await;
    sim.handle.stop_rtms(&j.engagement_id).await.expect("stop");
    let mut stopped = recv_type(&mut j.signaling, 9).await;
    if stopped["state"] == 2 {
        stopped = recv_type(&mut j.signaling, 9).await;
    }
    assert_eq!(stopped["state"], 5);
    assert_eq!(stopped["reason"], 25);
    let terminated = recv_type(&mut j.signaling, 8).await;
    assert_eq!(terminated["state"], 4, "{terminated}");
    assert_eq!(terminated["reason"], 25);
    assert!(
        recv_within(&mut j.signaling, WAIT).await.is_none(),
        "then the socket closes"
    );
    let hook = rx
        .next_event("contact_center.voice_rtms_stopped")
        .await
        .json();
    assert_eq!(hook["payload"]["rtms_stream_id"], j.stream_id.as_str());
    assert_eq!(hook["payload"]["engagement_id"], j.engagement_id.as_str());
    assert!(
        sim.handle
            .engagement(&j.engagement_id)
            .expect("known")
            .rtms_stream_id
            .is_none()
    );
    sim.stop().await;
}

#[tokio::test]
async fn transcripts_arrive_as_scripted_utterances_per_channel() {
    let sim = TestSim::start(|_| {}).await;
    let mut j = join(&sim, 32, l16_default()).await;
    let t = recv_type(&mut j.media, 17).await;
    let c = &t["content"];
    assert!(
        zoom_sim::audio::SCRIPT.contains(&c["data"].as_str().expect("text")),
        "{t}"
    );
    assert!(c["channel_id"] == "1" || c["channel_id"] == "2");
    assert!(c["start_time"].as_i64() < c["end_time"].as_i64());
    sim.stop().await;
}

#[tokio::test]
async fn zcc_events_follow_subscription_with_the_configured_participant_key() {
    let sim = TestSim::start(|_| {}).await;
    let mut j = join(&sim, 1, l16_default()).await;
    sim.handle
        .apply_faults(
            serde_json::from_value(json!({"participant_info": "paticipant_info"})).expect("faults"),
        )
        .expect("applies");
    send(&mut j.signaling, json!({"msg_type": 5, "events": [{"event_type": 8, "subscribe": true}, {"event_type": 18, "subscribe": true}]})).await;
    let e = recv_type(&mut j.signaling, 6).await;
    let e = if e["event"]["event_type"] == 1 {
        recv_type(&mut j.signaling, 6).await
    } else {
        e
    };
    assert_eq!(e["event"]["event_type"], 8);
    assert!(e["event"]["event_ts"].as_i64().is_some());
    assert_eq!(e["event"]["paticipant_info"]["channel_id"], "1");
    assert_eq!(e["event"]["paticipant_info"]["participant_mode"], "caller");
    assert!(e["event"].get("participant_info").is_none());

    assert!(
        sim.handle
            .send_voice_event(&j.engagement_id, 18)
            .expect("sent")
    );
    let t = recv_type(&mut j.signaling, 6).await;
    assert_eq!(t["event"]["event_type"], 18);
    assert!(
        !sim.handle
            .send_voice_event(&j.engagement_id, 12)
            .expect("not subscribed")
    );
    sim.stop().await;
}

#[tokio::test]
async fn three_unanswered_keep_alives_interrupt_the_stream_and_it_ends_after_the_window() {
    let mut rx = Receiver::start(0, String::new()).await;
    let sim = TestSim::start(|c| {
        c.app_url = Some(rx.url.clone());
        c.keepalive = Duration::from_millis(50);
        c.reconnect_window = Duration::from_millis(300);
    })
    .await;
    let mut j = join(&sim, 1, l16_default()).await;
    // Never answer: read until the server gives up on us.
    let deadline = tokio::time::Instant::now() + WAIT;
    while recv_within(
        &mut j.signaling,
        deadline.saturating_duration_since(tokio::time::Instant::now()),
    )
    .await
    .is_some()
    {}
    rx.next_event("contact_center.voice_rtms_interrupted").await;
    let stopped = rx
        .next_event("contact_center.voice_rtms_stopped")
        .await
        .json();
    assert_eq!(stopped["payload"]["stop_reason"], 24);
    sim.stop().await;
}

#[tokio::test]
async fn an_aborted_signaling_socket_can_rejoin_within_the_window_and_media_resumes() {
    let mut rx = Receiver::start(0, String::new()).await;
    let sim = TestSim::start(|c| c.app_url = Some(rx.url.clone())).await;
    let mut j = join(&sim, 1, l16_default()).await;
    recv_type(&mut j.media, 14).await;
    let done = sim
        .handle
        .apply_faults(serde_json::from_value(json!({"drop": {"mode": "abort"}})).expect("faults"))
        .expect("applies");
    assert_eq!(done, vec!["drop: 2 sockets".to_string()]);
    // Both sockets are cut without a close frame.
    let deadline = tokio::time::Instant::now() + WAIT;
    while recv_within(
        &mut j.signaling,
        deadline.saturating_duration_since(tokio::time::Instant::now()),
    )
    .await
    .is_some()
    {}
    rx.next_event("contact_center.voice_rtms_interrupted").await;

    let (mut sig, resp) = handshake_signaling(&sim, &j.engagement_id, &j.stream_id).await;
    assert_eq!(resp["status_code"], 0, "rejoin accepted: {resp}");
    let mut media = connect(
        resp["media_server"]["server_urls"]["audio"]
            .as_str()
            .expect("url"),
    )
    .await;
    send(
        &mut media,
        json!({"msg_type": 3, "engagement_id": j.engagement_id, "rtms_stream_id": j.stream_id,
        "signature": sim.signature(&j.engagement_id, &j.stream_id), "media_type": 1}),
    )
    .await;
    assert_eq!(recv_type(&mut media, 4).await["status_code"], 0);
    send(&mut sig, json!({"msg_type": 7})).await;
    recv_type(&mut media, 14).await;
    assert_eq!(
        sim.handle.stats_snapshot().signaling_handshakes.get("0"),
        Some(&2)
    );
    sim.stop().await;
}

#[tokio::test]
async fn stop_answering_leaves_handshakes_unanswered_and_refuse_handshakes_answers_with_a_code() {
    let sim = TestSim::start(|_| {}).await;
    let engagement_id = sim.handle.create_engagement().await.expect("engagement");
    let stream_id = sim.handle.start_rtms(&engagement_id).await.expect("stream");
    sim.handle
        .apply_faults(serde_json::from_value(json!({"stop_answering": true})).expect("faults"))
        .expect("applies");
    let mut ws = connect(&sim.rtms_url).await;
    send(&mut ws, json!({"msg_type": 1, "engagement_id": engagement_id, "rtms_stream_id": stream_id, "signature": sim.signature(&engagement_id, &stream_id)})).await;
    assert!(
        recv_within(&mut ws, Duration::from_millis(300))
            .await
            .is_none()
    );
    sim.handle
        .apply_faults(serde_json::from_value(json!({"stop_answering": false, "refuse_handshakes": {"count": 1, "status_code": 45}})).expect("faults"))
        .expect("applies");
    let (_a, refused) = handshake_signaling(&sim, &engagement_id, &stream_id).await;
    assert_eq!(refused["status_code"], 45);
    let (_b, ok) = handshake_signaling(&sim, &engagement_id, &stream_id).await;
    assert_eq!(ok["status_code"], 0);
    sim.stop().await;
}

#[tokio::test]
async fn the_tls_simulator_serves_wss_and_https_trusted_through_its_ca() {
    let sim = TestSim::start(|c| c.tls = true).await;
    let ca = sim.ca_cert.clone().expect("a CA path with TLS");
    assert!(
        sim.rtms_url.starts_with("wss://127.0.0.1:"),
        "{}",
        sim.rtms_url
    );
    assert!(sim.base_url.starts_with("https://"));
    let stats = sim
        .http()
        .get(format!("{}/sim/stats", sim.base_url))
        .send()
        .await
        .expect("https");
    assert_eq!(stats.status(), 200);
    let port = sim.rtms_url.rsplit(':').next().expect("port").to_string();
    for url in [sim.rtms_url.clone(), format!("wss://localhost:{port}")] {
        connect_tls(&url, &ca)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e:#}"));
    }
    // Without the CA the certificate is not trusted.
    let untrusted = tokio_tungstenite::connect_async(sim.rtms_url.as_str()).await;
    assert!(untrusted.is_err());
    sim.stop().await;
}

#[tokio::test]
async fn remaining_fault_switches_each_do_what_they_say() {
    let mut rx = Receiver::start(0, String::new()).await;
    let sim = TestSim::start(|c| c.app_url = Some(rx.url.clone())).await;
    let mut j = join(&sim, 1, l16_default()).await;
    let fault = |v: serde_json::Value| {
        sim.handle
            .apply_faults(serde_json::from_value(v).expect("fault json"))
            .expect("applies")
    };

    // duplicate_signaling: replace closes the old socket and admits the new one.
    fault(json!({"duplicate_signaling": "replace"}));
    let (mut sig2, resp) = handshake_signaling(&sim, &j.engagement_id, &j.stream_id).await;
    assert_eq!(resp["status_code"], 0);
    let deadline = tokio::time::Instant::now() + WAIT;
    while recv_within(
        &mut j.signaling,
        deadline.saturating_duration_since(tokio::time::Instant::now()),
    )
    .await
    .is_some()
    {}

    // resend_started: the same stream announced again (server fail-over).
    rx.next_event("contact_center.voice_rtms_started").await;
    fault(json!({"resend_started": j.engagement_id}));
    let again = rx
        .next_event("contact_center.voice_rtms_started")
        .await
        .json();
    assert_eq!(again["payload"]["rtms_stream_id"], j.stream_id.as_str());

    // drop media with a close frame: the signaling socket hears about it.
    fault(
        json!({"drop": {"engagement_id": j.engagement_id, "socket": "media", "mode": "close", "code": 1011}}),
    );
    let interrupted = recv_type(&mut sig2, 6).await;
    let interrupted = if interrupted["event"]["event_type"] == 1 {
        recv_type(&mut sig2, 6).await
    } else {
        interrupted
    };
    assert_eq!(interrupted["event"]["event_type"], 7);
    let state = recv_type(&mut sig2, 8).await;
    assert_eq!(
        (state["state"].as_i64(), state["reason"].as_i64()),
        (Some(2), Some(14))
    );

    // interrupt: sockets aborted and the interrupted webhook sent.
    fault(json!({"interrupt": j.engagement_id}));
    rx.next_event("contact_center.voice_rtms_interrupted").await;

    // fail_token: the next token request gets the status.
    fault(json!({"fail_token": {"status": 500, "count": 1}}));
    let r = sim
        .http()
        .post(format!("{}/oauth/token", sim.base_url))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), 500);

    // Unknown engagements in faults are a 404, not a panic.
    let err = sim
        .handle
        .apply_faults(serde_json::from_value(json!({"interrupt": "nope"})).expect("json"))
        .expect_err("unknown");
    assert!(matches!(err, zoom_sim::SimError::NotFound(_)));
    sim.stop().await;
}
