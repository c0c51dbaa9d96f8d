//! The golden RTMS fixtures (`tests/fixtures/rtms/`), simulator side: every
//! client message parses, and every server message the simulator builds has
//! exactly the fixture's shape (keys, JSON types, nesting).

use serde_json::{Value, json};
use zoom_sim::audio;
use zoom_sim::protocol::{self, ClientMsg};

use crate::support::fixtures::all as fixtures;

/// Same keys and JSON types everywhere (array elements: the first only).
fn same_shape(path: &str, a: &Value, b: &Value) -> Result<(), String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let kx: Vec<_> = x.keys().collect();
            let ky: Vec<_> = y.keys().collect();
            if kx != ky {
                return Err(format!("{path}: keys {kx:?} vs {ky:?}"));
            }
            for (k, v) in x {
                same_shape(&format!("{path}.{k}"), v, &y[k])?;
            }
            Ok(())
        }
        (Value::Array(x), Value::Array(y)) => match (x.first(), y.first()) {
            (Some(p), Some(q)) => same_shape(&format!("{path}[0]"), p, q),
            _ => Ok(()),
        },
        (Value::Number(x), Value::Number(y)) if x.is_i64() == y.is_i64() => Ok(()),
        (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => Ok(()),
        _ => Err(format!("{path}: {a} vs {b}")),
    }
}

fn participant(channel: &str, mode: &str, agent: bool) -> Value {
    let mut p = json!({
        "channel_id": channel, "participant_mode": mode, "queue_id": "q", "queue_name": "Support",
        "account_id": "a", "user_id": "u", "display_name": "d",
    });
    if !agent {
        p["phone_number"] = json!("+1");
    }
    p
}

/// What the simulator sends for each server fixture.
fn built(name: &str) -> Option<String> {
    let url = "wss://127.0.0.1:1/rtms/media";
    let audio_params = protocol::validate_media(Some(1), None).expect("defaults");
    let transcript_params = protocol::validate_media(Some(8), None).expect("defaults");
    Some(match name {
        "server_02_signaling_handshake_resp" => protocol::signaling_response(1, 0, "", Some(url)),
        "server_02_signaling_handshake_resp_duplicate" => {
            protocol::signaling_response(1, 8, "duplicate signal request", None)
        }
        "server_04_data_handshake_resp" => {
            protocol::media_response(1, 0, "", Some(audio_params.params_json()))
        }
        "server_04_data_handshake_resp_transcript" => {
            protocol::media_response(1, 0, "", Some(transcript_params.params_json()))
        }
        "server_06_event_first_packet" => protocol::first_packet_timestamp(1),
        "server_06_event_media_interrupted" => protocol::media_interrupted_event(1),
        "server_06_event_zcc_consumer_answered" => protocol::zcc_event(
            8,
            1,
            Some(&participant("1", "caller", false)),
            &["participant_info"],
        ),
        "server_06_event_zcc_transfer_typo" => protocol::zcc_event(
            18,
            1,
            Some(&participant("2", "callee", true)),
            &["paticipant_info"],
        ),
        "server_08_stream_state_active" => protocol::stream_state(1, 0, 1),
        "server_08_stream_state_terminated" => protocol::stream_state(4, 25, 1),
        "server_09_session_state_started" => protocol::session_state(2, "s", None, 1),
        "server_09_session_state_stopped" => protocol::session_state(5, "s", Some(25), 1),
        "server_12_keep_alive_req" => protocol::keep_alive(1, 1),
        "server_14_audio" => protocol::audio_frame(audio::frame_b64(0, 0), 20, "1", None),
        "server_14_audio_multi_stream" => {
            protocol::audio_frame(audio::frame_b64(1, 0), 20, "2", Some((1, "n")))
        }
        "server_17_transcript" => protocol::transcript("t", 1, 2, "1", None),
        _ => return None,
    })
}

#[test]
fn every_client_fixture_parses_on_the_simulator_side() {
    let mut seen = 0;
    for (name, bytes) in fixtures()
        .into_iter()
        .filter(|(n, _)| n.starts_with("client_"))
    {
        seen += 1;
        let msg = protocol::parse_client(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ok = match (&name[7..9], &msg) {
            ("01", ClientMsg::SignalingHandshake(h)) => {
                h.instance_id.is_some() && h.rtms_stream_id.is_some() && h.signature.is_some()
            }
            (
                "03",
                ClientMsg::MediaHandshake {
                    handshake,
                    media_type,
                    media_params,
                },
            ) => {
                protocol::validate_media(*media_type, media_params.as_ref())
                    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
                handshake.instance_id.is_some() && handshake.signature.is_some()
            }
            ("05", ClientMsg::EventSubscription(events)) => !events.is_empty(),
            ("07", ClientMsg::ClientReady) => true,
            (
                "13",
                ClientMsg::KeepAliveResp {
                    timestamp,
                    sequence,
                },
            ) => timestamp.is_some() && sequence.is_some(),
            ("21", ClientMsg::StreamCloseReq) => true,
            _ => false,
        };
        assert!(ok, "{name} parsed as {msg:?}");
    }
    assert!(seen >= 10, "client fixtures found: {seen}");
}

#[test]
fn every_server_fixture_has_the_shape_the_simulator_sends() {
    let mut seen = 0;
    for (name, bytes) in fixtures()
        .into_iter()
        .filter(|(n, _)| n.starts_with("server_"))
    {
        seen += 1;
        let fixture: Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let sent = built(&name).unwrap_or_else(|| panic!("no simulator builder for {name}"));
        let sent: Value = serde_json::from_str(&sent).expect("builders make JSON");
        same_shape(&name, &fixture, &sent).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(seen >= 16, "server fixtures found: {seen}");
}
