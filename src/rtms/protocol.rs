//! RTMS wire messages: what the app sends and what it understands.
//!
//! No IO. Every message is a JSON object with an integer `msg_type`; the
//! server may send it in a text or a binary frame, so decoding works on bytes.
//! Unknown fields and unknown message types are ignored, never fatal.
//! Audio frames are decoded without copying their base64 payload.

use std::borrow::Cow;
use std::fmt;

use hmac::{Hmac, Mac};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const PROTOCOL_VERSION: u32 = 1;

/// `msg_type` values (docs/rtms-protocol.md §5).
pub mod msg {
    pub const SIGNALING_HAND_SHAKE_REQ: u32 = 1;
    pub const SIGNALING_HAND_SHAKE_RESP: u32 = 2;
    pub const DATA_HAND_SHAKE_REQ: u32 = 3;
    pub const DATA_HAND_SHAKE_RESP: u32 = 4;
    pub const EVENT_SUBSCRIPTION: u32 = 5;
    pub const EVENT_UPDATE: u32 = 6;
    pub const CLIENT_READY_ACK: u32 = 7;
    pub const STREAM_STATE_UPDATE: u32 = 8;
    pub const SESSION_STATE_UPDATE: u32 = 9;
    pub const KEEP_ALIVE_REQ: u32 = 12;
    pub const KEEP_ALIVE_RESP: u32 = 13;
    pub const MEDIA_DATA_AUDIO: u32 = 14;
    pub const MEDIA_DATA_TRANSCRIPT: u32 = 17;
    pub const STREAM_CLOSE_REQ: u32 = 21;
    pub const STREAM_CLOSE_RESP: u32 = 22;
}

/// `media_type` bits (docs/rtms-protocol.md §8).
pub mod media_type {
    pub const AUDIO: u32 = 1;
    pub const TRANSCRIPT: u32 = 8;
    pub const ALL: u32 = 32;
}

/// RTMS_STREAM_STATE (docs/rtms-protocol.md §12.1).
pub mod stream_state {
    pub const ACTIVE: i64 = 1;
    pub const INTERRUPTED: i64 = 2;
    pub const TERMINATING: i64 = 3;
    pub const TERMINATED: i64 = 4;
}

/// RTMS_SESSION_STATE (docs/rtms-protocol.md §12.2).
pub mod session_state {
    pub const STARTED: i64 = 2;
    pub const STOPPED: i64 = 5;
}

/// RTMS_ZCC_VOICE_EVENT_TYPE: the ZCC voice events (docs/rtms-protocol.md §11.2).
pub mod voice_event {
    pub const CONSUMER_ANSWERED: i64 = 8;
    pub const CONSUMER_END: i64 = 9;
    pub const USER_ANSWERED: i64 = 10;
    pub const USER_END: i64 = 11;
    pub const USER_HOLD: i64 = 12;
    pub const USER_UNHOLD: i64 = 13;
    pub const TRANSFER_INITIATED: i64 = 18;
    pub const TRANSFER_COMPLETED: i64 = 21;
}

/// A few RTMS_STATUS_CODE values the client treats specially (docs/rtms-protocol.md §16.1).
pub mod status {
    pub const OK: i64 = 0;
    pub const INVALID_SIGNATURE: i64 = 3;
    pub const DUPLICATE_SIGNAL_REQUEST: i64 = 8;
}

/// Name of an RTMS_STATUS_CODE, for messages a person reads.
pub fn status_name(code: i64) -> &'static str {
    match code {
        -1 => "NOT_SUPPORTED_BY_CLIENT",
        0 => "OK",
        1 => "INVALID_MESSAGE_TYPE",
        2 => "INVALID_RTMS_STREAM_ID",
        3 => "INVALID_SIGNATURE",
        4 => "INVALID_PAYLOAD",
        7 => "INVALID_MEDIA_TYPE",
        8 => "DUPLICATE_SIGNAL_REQUEST",
        9 => "MEDIA_TYPE_AUDIO_NOT_SUPPORT",
        12 => "MEDIA_TYPE_TRANSCRIPT_NOT_SUPPORT",
        15 => "MEDIA_DATA_ALL_CONNECTION_EXIST",
        16 => "DUPLICATE_MEDIA_DATA_CONNECTION",
        17 => "INVALID_MEDIA_PARAMS",
        18..=24 => "INVALID_MEDIA_AUDIO_PARAMS",
        45 => "INTERNAL_EXCEPTION",
        _ => "UNKNOWN_STATUS",
    }
}

/// RTMS_STOP_REASON values the app acts on (docs/rtms-protocol.md §16.3).
pub mod stop_reason {
    /// Zoom revoked the stream: everything kept of it is deleted at once.
    pub const STREAM_REVOKED: i64 = 8;
}

/// Name of an RTMS_STOP_REASON (docs/rtms-protocol.md §16.3).
pub fn stop_reason_name(code: i64) -> &'static str {
    match code {
        0 => "UNDEFINED",
        6 => "MEETING_ENDED",
        7 => "STREAM_CANCELED",
        8 => "STREAM_REVOKED",
        10 => "INTERNAL_EXCEPTION",
        11 => "CONNECTION_TIMEOUT",
        13 => "SIGNAL_CONNECTION_INTERRUPTED",
        14 => "DATA_CONNECTION_INTERRUPTED",
        18 => "AUTHENTICATION_FAILURE",
        19 => "AWAIT_RECONNECTION_TIMEOUT",
        20 => "RECEIVER_REQUEST_CLOSE",
        21 => "CUSTOMER_DISCONNECTED",
        22 => "AGENT_DISCONNECTED",
        23 => "ADMIN_DISABLED_APP",
        24 => "KEEP_ALIVE_TIMEOUT",
        25 => "MANUAL_API_TRIGGERED",
        26 => "STREAMING_NOT_SUPPORTED",
        _ => "OTHER",
    }
}

/// Handshake signature: lowercase hex HMAC-SHA256 keyed with the client
/// secret over `client_id,instance_id,rtms_stream_id` (docs/rtms-protocol.md §3).
pub fn signature(
    client_id: &str,
    client_secret: &str,
    instance_id: &str,
    stream_id: &str,
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(client_secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(client_id.as_bytes());
    mac.update(b",");
    mac.update(instance_id.as_bytes());
    mac.update(b",");
    mac.update(stream_id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

// ---------------------------------------------------------------- outgoing

/// msg 1.
#[derive(Debug, Serialize)]
pub struct SignalingHandshake<'a> {
    pub msg_type: u32,
    pub protocol_version: u32,
    pub sequence: u64,
    pub engagement_id: &'a str,
    pub rtms_stream_id: &'a str,
    pub signature: &'a str,
}

impl<'a> SignalingHandshake<'a> {
    pub fn new(
        sequence: u64,
        engagement_id: &'a str,
        rtms_stream_id: &'a str,
        signature: &'a str,
    ) -> Self {
        Self {
            msg_type: msg::SIGNALING_HAND_SHAKE_REQ,
            protocol_version: PROTOCOL_VERSION,
            sequence,
            engagement_id,
            rtms_stream_id,
            signature,
        }
    }
}

/// `media_params.audio`: what we ask for — L16, 16 kHz, mono, 20 ms
/// (docs/rtms-protocol.md §8.1).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct AudioParams {
    pub content_type: u32,
    pub sample_rate: u32,
    pub channel: u32,
    pub codec: u32,
    pub data_opt: u32,
    pub send_rate: u32,
}

impl AudioParams {
    /// Raw audio, 16 kHz, mono, L16, one stream per channel, every 20 ms.
    pub const L16_16K_MONO_20MS: AudioParams = AudioParams {
        content_type: 2,
        sample_rate: 1,
        channel: 1,
        codec: 1,
        data_opt: 1,
        send_rate: 20,
    };

    /// Bytes of one frame: 2 bytes per sample × rate × interval.
    pub fn frame_bytes(&self) -> usize {
        let rate = match self.sample_rate {
            0 => 8_000,
            1 => 16_000,
            2 => 32_000,
            _ => 48_000,
        };
        rate * 2 * self.channel.max(1) as usize * self.send_rate.max(20) as usize / 1000
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct TranscriptParams {
    pub content_type: u32,
    pub src_language: i32,
    pub enable_lid: bool,
}

impl TranscriptParams {
    pub const ENGLISH_WITH_LID: TranscriptParams = TranscriptParams {
        content_type: 5,
        src_language: 9,
        enable_lid: true,
    };
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct MediaParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioParams>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<TranscriptParams>,
}

/// msg 3.
#[derive(Debug, Serialize)]
pub struct DataHandshake<'a> {
    pub msg_type: u32,
    pub protocol_version: u32,
    pub sequence: u64,
    pub engagement_id: &'a str,
    pub rtms_stream_id: &'a str,
    pub signature: &'a str,
    pub media_type: u32,
    pub payload_encryption: bool,
    pub media_params: MediaParams,
}

impl<'a> DataHandshake<'a> {
    pub fn new(
        sequence: u64,
        engagement_id: &'a str,
        rtms_stream_id: &'a str,
        signature: &'a str,
        media_type: u32,
    ) -> Self {
        let media_params = MediaParams {
            audio: (media_type & (media_type::AUDIO | media_type::ALL) != 0)
                .then_some(AudioParams::L16_16K_MONO_20MS),
            transcript: (media_type & (media_type::TRANSCRIPT | media_type::ALL) != 0)
                .then_some(TranscriptParams::ENGLISH_WITH_LID),
        };
        Self {
            msg_type: msg::DATA_HAND_SHAKE_REQ,
            protocol_version: PROTOCOL_VERSION,
            sequence,
            engagement_id,
            rtms_stream_id,
            signature,
            media_type,
            payload_encryption: false,
            media_params,
        }
    }
}

/// msg 7, sent on signaling after each successful media handshake.
#[derive(Debug, Serialize)]
pub struct ClientReadyAck<'a> {
    pub msg_type: u32,
    pub rtms_stream_id: &'a str,
}

impl<'a> ClientReadyAck<'a> {
    pub fn new(rtms_stream_id: &'a str) -> Self {
        Self {
            msg_type: msg::CLIENT_READY_ACK,
            rtms_stream_id,
        }
    }
}

/// msg 13: echoes `timestamp`, and `sequence` when the request had one.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct KeepAliveResp {
    pub msg_type: u32,
    pub timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<i64>,
}

impl KeepAliveResp {
    pub fn answer(timestamp: i64, sequence: Option<i64>) -> Self {
        Self {
            msg_type: msg::KEEP_ALIVE_RESP,
            timestamp,
            sequence,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EventSubscription {
    pub msg_type: u32,
    pub events: Vec<EventToggle>,
}

#[derive(Debug, Serialize)]
pub struct EventToggle {
    pub event_type: i64,
    pub subscribe: bool,
}

impl EventSubscription {
    /// The ZCC voice events the app follows: who answered, who left, holds
    /// and transfers (docs/rtms-protocol.md §11.1, §11.2).
    pub fn zcc_voice() -> Self {
        Self {
            msg_type: msg::EVENT_SUBSCRIPTION,
            events: [
                voice_event::CONSUMER_ANSWERED,
                voice_event::CONSUMER_END,
                voice_event::USER_ANSWERED,
                voice_event::USER_END,
                voice_event::USER_HOLD,
                voice_event::USER_UNHOLD,
                voice_event::TRANSFER_INITIATED,
                voice_event::TRANSFER_COMPLETED,
            ]
            .into_iter()
            .map(|event_type| EventToggle {
                event_type,
                subscribe: true,
            })
            .collect(),
        }
    }
}

/// msg 21: ask the server to end the stream.
#[derive(Debug, Serialize)]
pub struct StreamCloseReq<'a> {
    pub msg_type: u32,
    pub rtms_stream_id: &'a str,
}

pub fn encode<T: Serialize>(message: &T) -> String {
    // Our outgoing types hold only strings, integers and booleans.
    serde_json::to_string(message).unwrap_or_else(|_| unreachable!("outgoing messages serialize"))
}

// ---------------------------------------------------------------- incoming

/// A string that borrows from the input when it can (serde's own `Cow`
/// support never borrows inside an `Option`). Integers are accepted too, as
/// `channel_id` is a string in ZCC but `user_id` an integer in meetings.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelId<'a> {
    Text(Cow<'a, str>),
    /// Kept as a number until asked for as text, so an id that is not
    /// used (`user_id` next to a `channel_id`) costs no allocation.
    Int(i64),
    Uint(u64),
    Float(f64),
}

impl<'a> ChannelId<'a> {
    pub fn into_text(self) -> Cow<'a, str> {
        match self {
            ChannelId::Text(t) => t,
            ChannelId::Int(v) => Cow::Owned(v.to_string()),
            ChannelId::Uint(v) => Cow::Owned(v.to_string()),
            ChannelId::Float(v) => Cow::Owned(v.to_string()),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ChannelId<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ChannelId<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an integer id")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(ChannelId::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ChannelId::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(ChannelId::Text(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ChannelId::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ChannelId::Uint(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(ChannelId::Float(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
struct RawContent<'a> {
    #[serde(borrow, default)]
    data: Option<ChannelId<'a>>,
    #[serde(default)]
    timestamp: Option<serde_json::Number>,
    #[serde(borrow, default)]
    channel_id: Option<ChannelId<'a>>,
    #[serde(borrow, default)]
    user_id: Option<ChannelId<'a>>,
    #[serde(borrow, default)]
    user_name: Option<ChannelId<'a>>,
}

#[derive(Debug, Deserialize, Default)]
struct RawMediaServer {
    #[serde(default)]
    server_urls: MediaUrls,
}

/// Media URLs by kind from msg 2 (docs/rtms-protocol.md §7).
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
pub struct MediaUrls {
    pub audio: Option<String>,
    pub transcript: Option<String>,
    pub video: Option<String>,
    pub all: Option<String>,
}

/// Every field any incoming message may carry; one pass of serde.
#[derive(Debug, Deserialize)]
struct Raw<'a> {
    msg_type: u32,
    #[serde(default)]
    status_code: Option<i64>,
    #[serde(default)]
    reason: Option<serde_json::Value>,
    #[serde(default)]
    stop_reason: Option<i64>,
    #[serde(default)]
    state: Option<i64>,
    #[serde(default)]
    timestamp: Option<serde_json::Number>,
    #[serde(default)]
    sequence: Option<serde_json::Number>,
    #[serde(default)]
    media_server: Option<RawMediaServer>,
    #[serde(default)]
    payload_encrypted: Option<bool>,
    #[serde(default)]
    media_params: Option<serde_json::Value>,
    #[serde(default)]
    rtms_session_id: Option<String>,
    #[serde(default)]
    event: Option<serde_json::Value>,
    #[serde(borrow, default)]
    content: Option<RawContent<'a>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AudioFrame<'a> {
    /// Base64 payload, not yet decoded.
    pub data: Cow<'a, str>,
    pub timestamp: i64,
    /// `channel_id` (ZCC) or `user_id` (meetings); `"0"` when neither is sent.
    pub channel: Cow<'a, str>,
    pub user_name: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptFrame {
    pub text: String,
    pub timestamp: i64,
    pub channel: String,
    pub user_name: Option<String>,
}

/// A ZCC voice event (docs/rtms-protocol.md §11.2), with the participant fields we use.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceEvent {
    pub event_type: i64,
    pub channel_id: Option<String>,
    /// `caller` / `callee` as Zoom names them.
    pub participant_mode: Option<String>,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Incoming<'a> {
    SignalingHandshake {
        status_code: i64,
        reason: String,
        urls: MediaUrls,
    },
    DataHandshake {
        status_code: i64,
        reason: String,
        payload_encrypted: bool,
        audio: Option<AudioParams>,
    },
    Event(VoiceEvent),
    StreamState {
        state: i64,
        reason: i64,
    },
    SessionState {
        state: i64,
        reason: Option<i64>,
        rtms_session_id: Option<String>,
    },
    KeepAlive {
        timestamp: i64,
        sequence: Option<i64>,
    },
    Audio(AudioFrame<'a>),
    Transcript(TranscriptFrame),
    StreamCloseResp {
        status_code: i64,
    },
    /// A message type we do not use.
    Other(u32),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("not an RTMS JSON message: {0}")]
    Json(String),
    #[error("msg_type {msg_type} lacks {field}")]
    Missing { msg_type: u32, field: &'static str },
}

fn num_i64(n: Option<&serde_json::Number>) -> Option<i64> {
    n.and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)))
}

fn reason_text(v: Option<serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn reason_code(v: Option<&serde_json::Value>) -> Option<i64> {
    v.and_then(serde_json::Value::as_i64)
}

fn str_field(v: &serde_json::Value, key: &str) -> Option<String> {
    match v.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Decode one frame's bytes (text or binary).
pub fn decode(bytes: &[u8]) -> Result<Incoming<'_>, DecodeError> {
    match super::audio_json::audio(bytes) {
        Some(frame) => Ok(Incoming::Audio(frame)),
        None => decode_with_serde(bytes),
    }
}

/// [`decode`] without the audio fast path ([`super::audio_json`]).
pub(crate) fn decode_with_serde(bytes: &[u8]) -> Result<Incoming<'_>, DecodeError> {
    let raw: Raw<'_> =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    let t = raw.msg_type;
    let missing = |field| DecodeError::Missing { msg_type: t, field };
    Ok(match t {
        msg::SIGNALING_HAND_SHAKE_RESP => Incoming::SignalingHandshake {
            status_code: raw.status_code.ok_or(missing("status_code"))?,
            reason: reason_text(raw.reason),
            urls: raw.media_server.unwrap_or_default().server_urls,
        },
        msg::DATA_HAND_SHAKE_RESP => Incoming::DataHandshake {
            status_code: raw.status_code.ok_or(missing("status_code"))?,
            reason: reason_text(raw.reason),
            payload_encrypted: raw.payload_encrypted.unwrap_or(false),
            audio: raw
                .media_params
                .as_ref()
                .and_then(|p| p.get("audio"))
                .and_then(|a| serde_json::from_value(a.clone()).ok()),
        },
        msg::EVENT_UPDATE => {
            let event = raw.event.ok_or(missing("event"))?;
            let info = event
                .get("participant_info")
                .or_else(|| event.get("paticipant_info"))
                .cloned()
                .unwrap_or_default();
            Incoming::Event(VoiceEvent {
                event_type: event
                    .get("event_type")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0),
                channel_id: str_field(&info, "channel_id"),
                participant_mode: str_field(&info, "participant_mode"),
                display_name: str_field(&info, "display_name"),
            })
        }
        msg::STREAM_STATE_UPDATE => Incoming::StreamState {
            state: raw.state.ok_or(missing("state"))?,
            reason: reason_code(raw.reason.as_ref())
                .or(raw.stop_reason)
                .unwrap_or(0),
        },
        msg::SESSION_STATE_UPDATE => Incoming::SessionState {
            state: raw.state.ok_or(missing("state"))?,
            reason: reason_code(raw.reason.as_ref()).or(raw.stop_reason),
            rtms_session_id: raw.rtms_session_id,
        },
        msg::KEEP_ALIVE_REQ => Incoming::KeepAlive {
            timestamp: num_i64(raw.timestamp.as_ref()).ok_or(missing("timestamp"))?,
            sequence: num_i64(raw.sequence.as_ref()),
        },
        msg::MEDIA_DATA_AUDIO => {
            let c = raw.content.ok_or(missing("content"))?;
            Incoming::Audio(AudioFrame {
                data: c.data.ok_or(missing("content.data"))?.into_text(),
                timestamp: num_i64(c.timestamp.as_ref()).unwrap_or(0),
                channel: c
                    .channel_id
                    .or(c.user_id)
                    .map(ChannelId::into_text)
                    .unwrap_or(Cow::Borrowed("0")),
                user_name: c.user_name.map(ChannelId::into_text),
            })
        }
        msg::MEDIA_DATA_TRANSCRIPT => {
            let c = raw.content.ok_or(missing("content"))?;
            Incoming::Transcript(TranscriptFrame {
                text: c
                    .data
                    .ok_or(missing("content.data"))?
                    .into_text()
                    .into_owned(),
                timestamp: num_i64(c.timestamp.as_ref()).unwrap_or(0),
                channel: c
                    .channel_id
                    .or(c.user_id)
                    .map(|c| c.into_text().into_owned())
                    .unwrap_or_else(|| "0".into()),
                user_name: c.user_name.map(|n| n.into_text().into_owned()),
            })
        }
        msg::STREAM_CLOSE_RESP => Incoming::StreamCloseResp {
            status_code: raw.status_code.unwrap_or(0),
        },
        other => Incoming::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_probe_vectors() {
        assert_eq!(
            signature(
                "probe_client_id",
                "probe_client_secret",
                "EngProbe-1234567890abcdef",
                "0123456789abcdef0123456789abcdef"
            ),
            "05d10536b86b33f7fc0434060e82a529f95b7f0b9d41ceb14f3f966e895eb23f"
        );
        assert_eq!(
            signature(
                "probe_client_id",
                "probe_client_secret",
                "abcDEF+/xyz==",
                "0123456789abcdef0123456789abcdef"
            ),
            "4941e1fd5f141864e6c12e7b582cdd871f6bb643aa6de2981514a4d5527d5ded"
        );
        assert_eq!(
            signature(
                "TESTCLIENTID",
                "test_client_secret_123",
                "ENG123",
                "abc123stream"
            ),
            "745a592a99c6a4a6ff80e7f935de600ba53e0227bbe6367004d452284d89a567"
        );
    }

    #[test]
    fn handshake_asks_for_l16_16k_mono_20ms() {
        let msg = encode(&DataHandshake::new(7, "E", "S", "sig", media_type::AUDIO));
        let v: serde_json::Value = serde_json::from_str(&msg).expect("json");
        assert_eq!(v["msg_type"], 3);
        assert_eq!(v["engagement_id"], "E");
        assert_eq!(
            v["media_params"]["audio"],
            serde_json::json!({"content_type":2,"sample_rate":1,"channel":1,"codec":1,"data_opt":1,"send_rate":20})
        );
        assert!(v["media_params"].get("transcript").is_none());
        assert_eq!(AudioParams::L16_16K_MONO_20MS.frame_bytes(), 640);
    }

    #[test]
    fn decodes_audio_without_copying_and_accepts_numeric_ids() {
        let bytes = br#"{"msg_type":14,"content":{"data":"AAEC","timestamp":1700,"channel_id":"2","extra":[1]}}"#;
        match decode(bytes).expect("audio") {
            Incoming::Audio(f) => {
                assert!(matches!(f.data, Cow::Borrowed("AAEC")));
                assert_eq!(f.channel, "2");
                assert_eq!(f.timestamp, 1700);
            }
            other => panic!("unexpected {other:?}"),
        }
        let zcc = br#"{"msg_type":14,"content":{"user_id":0,"user_name":"C","data":"AA==","channel_id":"4c"}}"#;
        assert!(
            matches!(decode(zcc).expect("audio"), Incoming::Audio(f) if matches!(f.channel, Cow::Borrowed("4c")))
        );
        let meeting = br#"{"msg_type":14,"content":{"data":"AA==","timestamp":1,"user_id":16778240,"user_name":"A"}}"#;
        assert!(
            matches!(decode(meeting).expect("audio"), Incoming::Audio(f) if f.channel == "16778240")
        );
    }

    #[test]
    fn keep_alive_keeps_sequence_when_present() {
        assert_eq!(
            decode(br#"{"msg_type":12,"timestamp":123,"sequence":4}"#).expect("ka"),
            Incoming::KeepAlive {
                timestamp: 123,
                sequence: Some(4)
            }
        );
        assert_eq!(
            decode(br#"{"msg_type":12,"timestamp":123}"#).expect("ka"),
            Incoming::KeepAlive {
                timestamp: 123,
                sequence: None
            }
        );
        assert_eq!(
            encode(&KeepAliveResp::answer(123, Some(4))),
            r#"{"msg_type":13,"timestamp":123,"sequence":4}"#
        );
    }

    #[test]
    fn handshake_response_with_urls_and_states_decode() {
        let m2 = br#"{"msg_type":2,"protocol_version":1,"sequence":0,"status_code":0,"reason":"","media_server":{"server_urls":{"audio":"wss://a/m","all":"wss://a/all"}}}"#;
        match decode(m2).expect("m2") {
            Incoming::SignalingHandshake {
                status_code, urls, ..
            } => {
                assert_eq!(status_code, 0);
                assert_eq!(urls.audio.as_deref(), Some("wss://a/m"));
                assert_eq!(urls.all.as_deref(), Some("wss://a/all"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            decode(br#"{"msg_type":8,"state":4,"reason":25,"timestamp":1}"#).expect("m8"),
            Incoming::StreamState {
                state: 4,
                reason: 25
            }
        );
        assert!(matches!(
            decode(
                br#"{"msg_type":9,"state":5,"stop_reason":6,"timestamp":1,"rtms_session_id":"x"}"#
            )
            .expect("m9"),
            Incoming::SessionState {
                state: 5,
                reason: Some(6),
                ..
            }
        ));
    }

    #[test]
    fn events_accept_both_participant_info_spellings() {
        for key in ["participant_info", "paticipant_info"] {
            let raw = format!(
                r#"{{"msg_type":6,"event":{{"event_type":10,"event_ts":1,"{key}":{{"channel_id":"2","participant_mode":"callee","display_name":"Ann"}}}}}}"#
            );
            match decode(raw.as_bytes()).expect("event") {
                Incoming::Event(e) => {
                    assert_eq!(e.event_type, 10);
                    assert_eq!(e.channel_id.as_deref(), Some("2"));
                    assert_eq!(e.participant_mode.as_deref(), Some("callee"));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_types_are_other_and_garbage_is_an_error() {
        assert_eq!(
            decode(br#"{"msg_type":99,"x":1}"#).expect("other"),
            Incoming::Other(99)
        );
        assert!(matches!(decode(b"nope"), Err(DecodeError::Json(_))));
        assert!(matches!(
            decode(br#"{"msg_type":14}"#),
            Err(DecodeError::Missing { .. })
        ));
    }
}
