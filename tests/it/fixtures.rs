//! The golden RTMS fixtures (`tests/fixtures/rtms/`), app side: every server
//! message decodes into the right typed message, and every message the app
//! sends has the fixture's keys and is accepted by the simulator's parser.

use serde_json::Value;
use zcc_rtms::rtms::protocol::{self as app, Incoming};
use zoom_sim::protocol::{self as sim, ClientMsg};

use crate::support::fixtures::{fixture, server_fixtures};

#[test]
fn every_server_fixture_decodes_into_its_typed_message() {
    let all = server_fixtures();
    assert!(all.len() >= 15, "fixtures present: {}", all.len());
    for (name, bytes) in all {
        let msg = app::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let msg_type: u32 = name[7..9].parse().expect("type in name");
        let ok = match (msg_type, &msg) {
            (2, Incoming::SignalingHandshake { .. })
            | (4, Incoming::DataHandshake { .. })
            | (6, Incoming::Event(_))
            | (8, Incoming::StreamState { .. })
            | (9, Incoming::SessionState { .. })
            | (12, Incoming::KeepAlive { .. })
            | (14, Incoming::Audio(_))
            | (17, Incoming::Transcript(_)) => true,
            (n, Incoming::Other(m)) => n == *m,
            _ => false,
        };
        assert!(ok, "{name} decoded as {msg:?}");
    }
}

#[test]
fn server_fixture_values_are_read_as_documented() {
    match app::decode(&fixture("server_02_signaling_handshake_resp")).expect("m2") {
        Incoming::SignalingHandshake {
            status_code, urls, ..
        } => {
            assert_eq!(status_code, 0);
            assert!(urls.audio.is_some() && urls.all.is_some());
        }
        other => panic!("{other:?}"),
    }
    match app::decode(&fixture("server_02_signaling_handshake_resp_duplicate")).expect("m2") {
        Incoming::SignalingHandshake {
            status_code,
            reason,
            ..
        } => {
            assert_eq!(status_code, app::status::DUPLICATE_SIGNAL_REQUEST);
            assert!(reason.contains("duplicate"));
        }
        other => panic!("{other:?}"),
    }
    match app::decode(&fixture("server_04_data_handshake_resp")).expect("m4") {
        Incoming::DataHandshake {
            status_code,
            payload_encrypted,
            audio,
            ..
        } => {
            assert_eq!(status_code, 0);
            assert!(!payload_encrypted);
            assert_eq!(audio, Some(app::AudioParams::L16_16K_MONO_20MS));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        app::decode(&fixture("server_08_stream_state_terminated")).expect("m8"),
        Incoming::StreamState {
            state: 4,
            reason: 25
        }
    );
    match app::decode(&fixture("server_12_keep_alive_req")).expect("m12") {
        Incoming::KeepAlive { sequence, .. } => assert!(sequence.is_some()),
        other => panic!("{other:?}"),
    }
    match app::decode(&fixture("server_14_audio")).expect("m14") {
        Incoming::Audio(f) => {
            assert_eq!(f.channel, "1");
            assert_eq!(f.timestamp, 1_738_000_000_040);
            assert_eq!(f.data.len(), 44);
        }
        other => panic!("{other:?}"),
    }
    match app::decode(&fixture("server_06_event_zcc_transfer_typo")).expect("m6") {
        Incoming::Event(e) => {
            assert_eq!(e.event_type, 18);
            assert_eq!(e.channel_id.as_deref(), Some("2"));
            assert_eq!(e.participant_mode.as_deref(), Some("callee"));
        }
        other => panic!("{other:?}"),
    }
    match app::decode(&fixture("server_17_transcript")).expect("m17") {
        Incoming::Transcript(t) => {
            assert_eq!(t.channel, "1");
            assert!(t.text.starts_with("Hi, I'm calling"));
        }
        other => panic!("{other:?}"),
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn what_the_app_sends_has_the_fixture_keys_and_the_simulator_accepts_it() {
    let sig = app::signature("id", "secret", "ENG", "STREAM");
    let m1 = app::encode(&app::SignalingHandshake::new(1, "ENG", "STREAM", &sig));
    let golden: Value =
        serde_json::from_slice(&fixture("client_01_signaling_handshake_req")).expect("json");
    assert_eq!(
        keys(&serde_json::from_str(&m1).expect("json")),
        keys(&golden)
    );
    assert!(matches!(
        sim::parse_client(m1.as_bytes()),
        Ok(ClientMsg::SignalingHandshake(_))
    ));

    let m3 = app::encode(&app::DataHandshake::new(
        2,
        "ENG",
        "STREAM",
        &sig,
        app::media_type::AUDIO,
    ));
    let ours: Value = serde_json::from_str(&m3).expect("json");
    let golden: Value =
        serde_json::from_slice(&fixture("client_03_data_handshake_req_audio")).expect("json");
    assert_eq!(
        keys(&ours["media_params"]["audio"]),
        keys(&golden["media_params"]["audio"])
    );
    assert_eq!(
        ours["media_params"]["audio"],
        golden["media_params"]["audio"]
    );
    assert!(matches!(
        sim::parse_client(m3.as_bytes()),
        Ok(ClientMsg::MediaHandshake { .. })
    ));

    let m7 = app::encode(&app::ClientReadyAck::new("STREAM"));
    let golden: Value =
        serde_json::from_slice(&fixture("client_07_client_ready_ack")).expect("json");
    assert_eq!(
        keys(&serde_json::from_str(&m7).expect("json")),
        keys(&golden)
    );
    assert!(matches!(
        sim::parse_client(m7.as_bytes()),
        Ok(ClientMsg::ClientReady)
    ));

    let m13 = app::encode(&app::KeepAliveResp::answer(1_738_000_000_000, Some(1)));
    let golden: Value =
        serde_json::from_slice(&fixture("client_13_keep_alive_resp")).expect("json");
    assert_eq!(serde_json::from_str::<Value>(&m13).expect("json"), golden);
    assert!(matches!(
        sim::parse_client(m13.as_bytes()),
        Ok(ClientMsg::KeepAliveResp { .. })
    ));

    let m5 = app::encode(&app::EventSubscription::zcc_voice());
    let golden: Value =
        serde_json::from_slice(&fixture("client_05_event_subscription")).expect("json");
    let ours: Value = serde_json::from_str(&m5).expect("json");
    assert_eq!(keys(&ours), keys(&golden));
    assert_eq!(keys(&ours["events"][0]), keys(&golden["events"][0]));
    assert!(matches!(
        sim::parse_client(m5.as_bytes()),
        Ok(ClientMsg::EventSubscription(_))
    ));
}
