//! The simulator's side of the RTMS wire format (`docs/rtms-protocol.md`): parsing
//! what clients send, building what the server sends, validating media
//! parameters into status codes. No IO.
//!
//! Written independently of the app's `zcc_rtms::rtms::protocol` on purpose.
//! Parsing is lenient like a real server: unknown keys are ignored, JSON may
//! arrive pretty-printed in binary frames (the official SDK does that).

use serde_json::{Map, Value, json};

pub const MSG_SIGNALING_HANDSHAKE_REQ: i64 = 1;
pub const MSG_SIGNALING_HANDSHAKE_RESP: i64 = 2;
pub const MSG_DATA_HANDSHAKE_REQ: i64 = 3;
pub const MSG_DATA_HANDSHAKE_RESP: i64 = 4;
pub const MSG_EVENT_SUBSCRIPTION: i64 = 5;
pub const MSG_EVENT_UPDATE: i64 = 6;
pub const MSG_CLIENT_READY_ACK: i64 = 7;
pub const MSG_STREAM_STATE_UPDATE: i64 = 8;
pub const MSG_SESSION_STATE_UPDATE: i64 = 9;
pub const MSG_SESSION_STATE_REQ: i64 = 10;
pub const MSG_SESSION_STATE_RESP: i64 = 11;
pub const MSG_KEEP_ALIVE_REQ: i64 = 12;
pub const MSG_KEEP_ALIVE_RESP: i64 = 13;
pub const MSG_MEDIA_DATA_AUDIO: i64 = 14;
pub const MSG_MEDIA_DATA_TRANSCRIPT: i64 = 17;
pub const MSG_STREAM_STATE_REQ: i64 = 19;
pub const MSG_STREAM_STATE_RESP: i64 = 20;
pub const MSG_STREAM_CLOSE_REQ: i64 = 21;
pub const MSG_STREAM_CLOSE_RESP: i64 = 22;

/// Media type bits.
pub const MEDIA_AUDIO: u8 = 1;
pub const MEDIA_VIDEO: u8 = 2;
pub const MEDIA_DESKSHARE: u8 = 4;
pub const MEDIA_TRANSCRIPT: u8 = 8;
pub const MEDIA_CHAT: u8 = 16;
pub const MEDIA_ALL: u8 = 32;

/// RTMS_STATUS_CODE (current table, docs/rtms-protocol.md §16.1).
pub mod status {
    pub const OK: i64 = 0;
    pub const INVALID_MESSAGE_TYPE: i64 = 1;
    pub const INVALID_RTMS_STREAM_ID: i64 = 2;
    pub const INVALID_SIGNATURE: i64 = 3;
    pub const INVALID_PAYLOAD: i64 = 4;
    pub const INVALID_MEDIA_TYPE: i64 = 7;
    pub const DUPLICATE_SIGNAL_REQUEST: i64 = 8;
    pub const MEDIA_TYPE_VIDEO_NOT_SUPPORT: i64 = 10;
    pub const MEDIA_TYPE_DESKSHARE_NOT_SUPPORT: i64 = 11;
    pub const MEDIA_TYPE_CHAT_NOT_SUPPORT: i64 = 13;
    pub const MEDIA_TYPE_INVALID_VALUE: i64 = 14;
    pub const MEDIA_DATA_ALL_CONNECTION_EXIST: i64 = 15;
    pub const DUPLICATE_MEDIA_DATA_CONNECTION: i64 = 16;
    pub const INVALID_MEDIA_PARAMS: i64 = 17;
    pub const INVALID_MEDIA_AUDIO_PARAMS: i64 = 18;
    pub const INVALID_MEDIA_AUDIO_CONTENT_TYPE: i64 = 19;
    pub const INVALID_MEDIA_AUDIO_SAMPLE_RATE: i64 = 20;
    pub const INVALID_MEDIA_AUDIO_CHANNEL: i64 = 21;
    pub const INVALID_MEDIA_AUDIO_CODEC: i64 = 22;
    pub const INVALID_MEDIA_AUDIO_DATA_OPT: i64 = 23;
    pub const INVALID_MEDIA_AUDIO_SEND_RATE: i64 = 24;
    pub const INVALID_MEDIA_TRANSCRIPT_PARAMS: i64 = 36;
    pub const INVALID_MEDIA_TRANSCRIPT_CONTENT_TYPE: i64 = 37;
    pub const INVALID_MEDIA_TRANSCRIPT_SOURCE_LANGUAGE: i64 = 43;
    pub const INTERNAL_EXCEPTION: i64 = 45;
}

/// RTMS_STOP_REASON values the simulator uses (docs/rtms-protocol.md §16.3).
pub mod stop_reason {
    pub const STREAM_REVOKED: i64 = 8;
    pub const SIGNAL_CONNECTION_INTERRUPTED: i64 = 13;
    pub const DATA_CONNECTION_INTERRUPTED: i64 = 14;
    pub const AWAIT_RECONNECTION_TIMEOUT: i64 = 19;
    pub const RECEIVER_REQUEST_CLOSE: i64 = 20;
    pub const CUSTOMER_DISCONNECTED: i64 = 21;
    pub const AGENT_DISCONNECTED: i64 = 22;
    pub const KEEP_ALIVE_TIMEOUT: i64 = 24;
    pub const MANUAL_API_TRIGGERED: i64 = 25;
}

/// Stream states (msg 8) and session states (msg 9).
pub mod state {
    pub const STREAM_ACTIVE: i64 = 1;
    pub const STREAM_INTERRUPTED: i64 = 2;
    pub const STREAM_TERMINATED: i64 = 4;
    pub const STREAM_PAUSED: i64 = 5;
    pub const STREAM_RESUMED: i64 = 6;
    pub const SESSION_STARTED: i64 = 2;
    pub const SESSION_PAUSED: i64 = 3;
    pub const SESSION_RESUMED: i64 = 4;
    pub const SESSION_STOPPED: i64 = 5;
}

/// Keys a client may use for the instance id, in order of preference.
pub const INSTANCE_KEYS: [&str; 4] = [
    "engagement_id",
    "meeting_uuid",
    "webinar_uuid",
    "session_id",
];

/// Fields common to msg 1 and msg 3.
#[derive(Debug, Clone, PartialEq)]
pub struct Handshake {
    pub sequence: i64,
    pub instance_id: Option<String>,
    pub rtms_stream_id: Option<String>,
    pub signature: Option<String>,
    /// `buffer_data` (signaling): false drops the audio buffered before the
    /// first connection; absent means true.
    pub buffer_data: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientMsg {
    SignalingHandshake(Handshake),
    MediaHandshake {
        handshake: Handshake,
        media_type: Option<i64>,
        media_params: Option<Value>,
    },
    /// `(event_type, subscribe)` pairs.
    EventSubscription(Vec<(i64, bool)>),
    ClientReady,
    KeepAliveResp {
        timestamp: Option<i64>,
        sequence: Option<i64>,
    },
    SessionStateReq {
        rtms_session_id: Option<String>,
    },
    StreamStateReq,
    StreamCloseReq,
    /// A well-formed message of a type the server does not act on.
    Other(i64),
}

/// Parse one client frame (text or binary bytes).
pub fn parse_client(bytes: &[u8]) -> Result<ClientMsg, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let msg_type = obj
        .get("msg_type")
        .and_then(Value::as_i64)
        .ok_or("msg_type missing or not an integer")?;
    Ok(match msg_type {
        MSG_SIGNALING_HANDSHAKE_REQ => ClientMsg::SignalingHandshake(handshake(obj)),
        MSG_DATA_HANDSHAKE_REQ => ClientMsg::MediaHandshake {
            handshake: handshake(obj),
            media_type: obj.get("media_type").and_then(Value::as_i64),
            media_params: obj.get("media_params").cloned().filter(|v| !v.is_null()),
        },
        MSG_EVENT_SUBSCRIPTION => ClientMsg::EventSubscription(
            obj.get("events")
                .and_then(Value::as_array)
                .map(|events| {
                    events
                        .iter()
                        .filter_map(|e| match e {
                            // Object form (SDK, docs) or plain ints (an old ZCC sample).
                            Value::Object(o) => Some((
                                o.get("event_type").and_then(Value::as_i64)?,
                                o.get("subscribe").and_then(Value::as_bool).unwrap_or(true),
                            )),
                            Value::Number(n) => Some((n.as_i64()?, true)),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        MSG_CLIENT_READY_ACK => ClientMsg::ClientReady,
        MSG_KEEP_ALIVE_RESP => ClientMsg::KeepAliveResp {
            timestamp: obj.get("timestamp").and_then(Value::as_i64),
            sequence: obj.get("sequence").and_then(Value::as_i64),
        },
        MSG_SESSION_STATE_REQ => ClientMsg::SessionStateReq {
            rtms_session_id: str_field(obj, "rtms_session_id"),
        },
        MSG_STREAM_STATE_REQ => ClientMsg::StreamStateReq,
        MSG_STREAM_CLOSE_REQ => ClientMsg::StreamCloseReq,
        other => ClientMsg::Other(other),
    })
}

fn str_field(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn handshake(obj: &Map<String, Value>) -> Handshake {
    Handshake {
        sequence: obj.get("sequence").and_then(Value::as_i64).unwrap_or(0),
        instance_id: INSTANCE_KEYS.iter().find_map(|k| str_field(obj, k)),
        rtms_stream_id: str_field(obj, "rtms_stream_id"),
        signature: str_field(obj, "signature"),
        buffer_data: obj.get("buffer_data").and_then(Value::as_bool),
    }
}

/// Confirmed audio parameters (all six keys, docs/rtms-protocol.md §8.1, §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioParams {
    pub content_type: i64,
    pub sample_rate: i64,
    pub channel: i64,
    pub codec: i64,
    pub data_opt: i64,
    pub send_rate: i64,
}

impl Default for AudioParams {
    fn default() -> Self {
        Self {
            content_type: 2,
            sample_rate: 1,
            channel: 1,
            codec: 1,
            data_opt: 1,
            send_rate: 20,
        }
    }
}

impl AudioParams {
    pub fn to_json(self) -> Value {
        json!({
            "content_type": self.content_type,
            "sample_rate": self.sample_rate,
            "channel": self.channel,
            "codec": self.codec,
            "data_opt": self.data_opt,
            "send_rate": self.send_rate,
        })
    }

    pub fn rate_hz(self) -> u32 {
        match self.sample_rate {
            0 => 8_000,
            2 => 32_000,
            3 => 48_000,
            _ => 16_000,
        }
    }

    /// 20 ms frames per packet.
    pub fn frames_per_packet(self) -> usize {
        (self.send_rate / 20).max(1) as usize
    }

    pub fn is_default_format(self) -> bool {
        self.sample_rate == 1 && self.channel == 1 && self.send_rate == 20
    }

    pub fn multi_stream(self) -> bool {
        self.data_opt == 2
    }
}

/// Confirmed transcript parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptParams {
    pub content_type: i64,
    pub src_language: i64,
    pub enable_lid: bool,
}

impl TranscriptParams {
    pub fn to_json(&self) -> Value {
        json!({
            "content_type": self.content_type,
            "src_language": self.src_language,
            "enable_lid": self.enable_lid,
        })
    }
}

/// What a media handshake asked for, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRequest {
    /// The requested mask, `ALL` expanded to audio + transcript for ZCC.
    pub kinds: u8,
    /// Whether the socket was opened as `all`.
    pub all: bool,
    pub audio: Option<AudioParams>,
    pub transcript: Option<TranscriptParams>,
}

impl MediaRequest {
    pub fn params_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(a) = self.audio {
            m.insert("audio".into(), a.to_json());
        }
        if let Some(t) = &self.transcript {
            m.insert("transcript".into(), t.to_json());
        }
        Value::Object(m)
    }
}

fn int_param(
    obj: &Map<String, Value>,
    key: &str,
    default: i64,
    code: i64,
    ok: impl Fn(i64) -> bool,
) -> Result<i64, (i64, String)> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_i64()
            .filter(|n| ok(*n))
            .ok_or_else(|| (code, format!("invalid audio {key}: {v}"))),
    }
}

/// Validate `media_type` and `media_params` into status codes
/// (docs/rtms-protocol.md §8, §16.1).
/// ZCC voice serves audio and transcripts; video, deskshare and chat are refused.
pub fn validate_media(
    media_type: Option<i64>,
    params: Option<&Value>,
) -> Result<MediaRequest, (i64, String)> {
    let mt = media_type.ok_or((status::INVALID_MEDIA_TYPE, "media_type missing".to_string()))?;
    if !(1..=63).contains(&mt) {
        return Err((
            status::MEDIA_TYPE_INVALID_VALUE,
            format!("media_type {mt} is not a valid bitmask"),
        ));
    }
    let mt = mt as u8;
    if mt & MEDIA_VIDEO != 0 {
        return Err((
            status::MEDIA_TYPE_VIDEO_NOT_SUPPORT,
            "video is not available for ZCC voice".into(),
        ));
    }
    if mt & MEDIA_DESKSHARE != 0 {
        return Err((
            status::MEDIA_TYPE_DESKSHARE_NOT_SUPPORT,
            "deskshare is not available for ZCC voice".into(),
        ));
    }
    if mt & MEDIA_CHAT != 0 {
        return Err((
            status::MEDIA_TYPE_CHAT_NOT_SUPPORT,
            "chat is not available for ZCC voice".into(),
        ));
    }
    let all = mt & MEDIA_ALL != 0;
    let kinds = if all {
        MEDIA_AUDIO | MEDIA_TRANSCRIPT
    } else {
        mt & (MEDIA_AUDIO | MEDIA_TRANSCRIPT)
    };
    let params = match params {
        None => None,
        Some(Value::Object(o)) => Some(o),
        Some(_) => {
            return Err((
                status::INVALID_MEDIA_PARAMS,
                "media_params must be an object".into(),
            ));
        }
    };
    let audio = if kinds & MEDIA_AUDIO != 0 {
        let a = match params.and_then(|p| p.get("audio")) {
            None | Some(Value::Null) => AudioParams::default(),
            Some(Value::Object(a)) => {
                let d = AudioParams::default();
                let mut send_rate = int_param(
                    a,
                    "send_rate",
                    d.send_rate,
                    status::INVALID_MEDIA_AUDIO_SEND_RATE,
                    |n| n >= 20 && n % 20 == 0,
                )?;
                send_rate = send_rate.min(1000);
                AudioParams {
                    content_type: int_param(
                        a,
                        "content_type",
                        d.content_type,
                        status::INVALID_MEDIA_AUDIO_CONTENT_TYPE,
                        |n| n == 1 || n == 2,
                    )?,
                    sample_rate: int_param(
                        a,
                        "sample_rate",
                        d.sample_rate,
                        status::INVALID_MEDIA_AUDIO_SAMPLE_RATE,
                        |n| (0..=3).contains(&n),
                    )?,
                    channel: int_param(
                        a,
                        "channel",
                        d.channel,
                        status::INVALID_MEDIA_AUDIO_CHANNEL,
                        |n| n == 1 || n == 2,
                    )?,
                    // Only L16 is produced: the simulator has no G.711/G.722/Opus encoder.
                    codec: int_param(
                        a,
                        "codec",
                        d.codec,
                        status::INVALID_MEDIA_AUDIO_CODEC,
                        |n| n == 1,
                    )?,
                    data_opt: int_param(
                        a,
                        "data_opt",
                        d.data_opt,
                        status::INVALID_MEDIA_AUDIO_DATA_OPT,
                        |n| n == 1 || n == 2,
                    )?,
                    send_rate,
                }
            }
            Some(_) => {
                return Err((
                    status::INVALID_MEDIA_AUDIO_PARAMS,
                    "media_params.audio must be an object".into(),
                ));
            }
        };
        Some(a)
    } else {
        None
    };
    let transcript = if kinds & MEDIA_TRANSCRIPT != 0 {
        let t = match params.and_then(|p| p.get("transcript")) {
            None | Some(Value::Null) => TranscriptParams {
                content_type: 5,
                src_language: 9,
                enable_lid: true,
            },
            Some(Value::Object(t)) => TranscriptParams {
                content_type: match t.get("content_type") {
                    None | Some(Value::Null) => 5,
                    Some(v) => v.as_i64().filter(|n| *n == 5).ok_or((
                        status::INVALID_MEDIA_TRANSCRIPT_CONTENT_TYPE,
                        format!("invalid transcript content_type: {v}"),
                    ))?,
                },
                src_language: match t.get("src_language") {
                    None | Some(Value::Null) => 9,
                    Some(v) => v.as_i64().filter(|n| (-1..=36).contains(n)).ok_or((
                        status::INVALID_MEDIA_TRANSCRIPT_SOURCE_LANGUAGE,
                        format!("invalid transcript src_language: {v}"),
                    ))?,
                },
                enable_lid: t.get("enable_lid").and_then(Value::as_bool).unwrap_or(true),
            },
            Some(_) => {
                return Err((
                    status::INVALID_MEDIA_TRANSCRIPT_PARAMS,
                    "media_params.transcript must be an object".into(),
                ));
            }
        };
        Some(t)
    } else {
        None
    };
    Ok(MediaRequest {
        kinds,
        all,
        audio,
        transcript,
    })
}

pub fn signaling_response(
    sequence: i64,
    status_code: i64,
    reason: &str,
    media_url: Option<&str>,
) -> String {
    let mut v = json!({
        "msg_type": MSG_SIGNALING_HANDSHAKE_RESP,
        "protocol_version": 1,
        "sequence": sequence,
        "status_code": status_code,
        "reason": reason,
    });
    if let Some(url) = media_url {
        v["media_server"] = json!({
            "server_urls": {
                "audio": url,
                "transcript": url,
                "video": url,
                "all": url,
            }
        });
    }
    v.to_string()
}

pub fn media_response(
    sequence: i64,
    status_code: i64,
    reason: &str,
    params: Option<Value>,
) -> String {
    let mut v = json!({
        "msg_type": MSG_DATA_HANDSHAKE_RESP,
        "protocol_version": 1,
        "sequence": sequence,
        "status_code": status_code,
        "reason": reason,
        "payload_encrypted": false,
    });
    if let Some(p) = params {
        v["media_params"] = p;
    }
    v.to_string()
}

pub fn first_packet_timestamp(timestamp: i64) -> String {
    json!({"msg_type": MSG_EVENT_UPDATE, "event": {"event_type": 1, "timestamp": timestamp}})
        .to_string()
}

pub fn media_interrupted_event(timestamp: i64) -> String {
    json!({"msg_type": MSG_EVENT_UPDATE, "event": {"event_type": 7, "timestamp": timestamp}})
        .to_string()
}

pub fn stream_state(state: i64, reason: i64, timestamp: i64) -> String {
    json!({"msg_type": MSG_STREAM_STATE_UPDATE, "state": state, "reason": reason, "timestamp": timestamp}).to_string()
}

pub fn session_state(state: i64, session_id: &str, reason: Option<i64>, timestamp: i64) -> String {
    let mut v = json!({
        "msg_type": MSG_SESSION_STATE_UPDATE,
        "state": state,
        "timestamp": timestamp,
        "rtms_session_id": session_id,
    });
    if let Some(r) = reason {
        v["reason"] = json!(r);
        v["stop_reason"] = json!(r);
    }
    v.to_string()
}

pub fn keep_alive(timestamp: i64, sequence: u64) -> String {
    format!(r#"{{"msg_type":12,"timestamp":{timestamp},"sequence":{sequence}}}"#)
}

/// One audio frame. Built by hand: this runs 100 times a second per stream.
pub fn audio_frame(
    b64: &str,
    timestamp: i64,
    channel_id: &str,
    user: Option<(i64, &str)>,
) -> String {
    let mut s = String::with_capacity(b64.len() + 160);
    s.push_str(r#"{"msg_type":14,"content":{"data":""#);
    s.push_str(b64);
    s.push_str(r#"","timestamp":"#);
    s.push_str(&timestamp.to_string());
    s.push_str(r#","channel_id":""#);
    s.push_str(channel_id);
    s.push('"');
    if let Some((id, name)) = user {
        s.push_str(r#","user_id":"#);
        s.push_str(&id.to_string());
        s.push_str(r#","user_name":"#);
        s.push_str(&Value::String(name.to_owned()).to_string());
    }
    s.push_str(r#","length":"#);
    s.push_str(&decoded_len(b64).to_string());
    s.push_str("}}");
    s
}

/// Byte length of a padded base64 payload once decoded (`length`, docs/rtms-protocol.md §14.1).
fn decoded_len(b64: &str) -> usize {
    let padding = b64.bytes().rev().take_while(|&b| b == b'=').count();
    (b64.len() / 4 * 3).saturating_sub(padding)
}

pub fn transcript(
    text: &str,
    start_ms: i64,
    end_ms: i64,
    channel_id: &str,
    user: Option<(i64, &str)>,
) -> String {
    let mut content = json!({
        "data": text,
        "timestamp": start_ms,
        "start_time": start_ms,
        "end_time": end_ms,
        "language": 9,
        "channel_id": channel_id,
    });
    if let Some((id, name)) = user {
        content["user_id"] = json!(id);
        content["user_name"] = json!(name);
    }
    json!({"msg_type": MSG_MEDIA_DATA_TRANSCRIPT, "content": content}).to_string()
}

/// A ZCC voice event (docs/rtms-protocol.md §11.2) with the participant under the given key(s).
pub fn zcc_event(
    event_type: i64,
    event_ts: i64,
    participant: Option<&Value>,
    keys: &[&str],
) -> String {
    let mut event = json!({"event_type": event_type, "event_ts": event_ts});
    if let Some(p) = participant {
        for k in keys {
            event[*k] = p.clone();
        }
    }
    json!({"msg_type": MSG_EVENT_UPDATE, "event": event}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_accepts_either_instance_key_in_text_or_pretty_json() {
        let zcc = br#"{"msg_type":1,"protocol_version":1,"sequence":7,"engagement_id":"E","rtms_stream_id":"S","signature":"sig"}"#;
        let sdk = b"{\n\t\"meeting_uuid\":\t\"E\",\n\t\"msg_type\":\t1,\n\t\"rtms_stream_id\":\t\"S\",\n\t\"sequence\":\t1129096,\n\t\"signature\":\t\"sig\"\n}";
        for (raw, seq) in [(&zcc[..], 7), (&sdk[..], 1_129_096)] {
            match parse_client(raw).expect("parses") {
                ClientMsg::SignalingHandshake(h) => {
                    assert_eq!(h.instance_id.as_deref(), Some("E"));
                    assert_eq!(h.rtms_stream_id.as_deref(), Some("S"));
                    assert_eq!(h.sequence, seq);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        assert!(parse_client(b"not json").is_err());
        assert!(parse_client(b"[1,2]").is_err());
        assert!(parse_client(br#"{"msg_type":"one"}"#).is_err());
        assert_eq!(
            parse_client(br#"{"msg_type":99}"#),
            Ok(ClientMsg::Other(99))
        );
    }

    #[test]
    fn audio_params_map_to_their_status_codes() {
        let check = |audio: Value| {
            validate_media(Some(1), Some(&json!({"audio": audio})))
                .map(|_| ())
                .map_err(|e| e.0)
        };
        assert_eq!(check(json!({"content_type": 9})), Err(19));
        assert_eq!(check(json!({"sample_rate": 7})), Err(20));
        assert_eq!(check(json!({"channel": 3})), Err(21));
        assert_eq!(check(json!({"codec": 4})), Err(22));
        assert_eq!(check(json!({"data_opt": 5})), Err(23));
        assert_eq!(check(json!({"send_rate": 30})), Err(24));
        assert_eq!(check(json!("x")), Err(18));
        assert_eq!(
            validate_media(Some(1), Some(&json!(3))).map_err(|e| e.0),
            Err(17)
        );
        assert_eq!(validate_media(Some(2), None).map_err(|e| e.0), Err(10));
        assert_eq!(validate_media(None, None).map_err(|e| e.0), Err(7));
        assert_eq!(validate_media(Some(64), None).map_err(|e| e.0), Err(14));
        let big =
            validate_media(Some(1), Some(&json!({"audio": {"send_rate": 2000}}))).expect("clamped");
        assert_eq!(big.audio.expect("audio").send_rate, 1000);
        let all = validate_media(Some(32), None).expect("all");
        assert_eq!(all.kinds, MEDIA_AUDIO | MEDIA_TRANSCRIPT);
        assert!(all.all);
    }

    #[test]
    fn audio_frame_is_valid_json_with_the_documented_keys() {
        let f = audio_frame("QUJD", 40, "1", Some((16_778_241, "Casey \"C\"")));
        let v: Value = serde_json::from_str(&f).expect("json");
        assert_eq!(v["msg_type"], 14);
        assert_eq!(v["content"]["data"], "QUJD");
        assert_eq!(v["content"]["timestamp"], 40);
        assert_eq!(v["content"]["channel_id"], "1");
        assert_eq!(v["content"]["user_name"], "Casey \"C\"");
        assert_eq!(v["content"]["length"], 3);
        let padded: Value = serde_json::from_str(&audio_frame("QUI=", 0, "1", None)).expect("json");
        assert_eq!(padded["content"]["length"], 2);
    }
}
