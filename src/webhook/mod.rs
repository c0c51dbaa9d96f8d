//! Zoom webhooks: signature verification and typed events.
//!
//! Pure functions over the raw body and headers. Never touches the store or
//! the RTMS engine; the HTTP layer decides what to do with a parsed event.

mod verify;

pub use verify::{VerifyError, sign, url_validation_token, verify};

use serde::Deserialize;
use serde_json::Value;

/// Largest webhook body accepted. Zoom's events are a few hundred bytes.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum WebhookEvent {
    UrlValidation {
        plain_token: String,
    },
    EngagementStarted {
        engagement_id: String,
        account_id: Option<String>,
        /// The agent it is assigned to (`payload.object.user_id`), if sent.
        agent_user_id: Option<String>,
    },
    EngagementEnded {
        engagement_id: String,
        account_id: Option<String>,
    },
    RtmsStarted {
        engagement_id: String,
        rtms_stream_id: String,
        server_urls: String,
    },
    RtmsStopped {
        engagement_id: String,
        rtms_stream_id: String,
        stop_reason: Option<i64>,
    },
    RtmsInterrupted {
        engagement_id: String,
        rtms_stream_id: String,
    },
    /// A user removed the app: delete what we keep about them.
    AppDeauthorized {
        account_id: String,
        user_id: String,
    },
    /// A well-formed event we do not act on.
    Other {
        event: String,
    },
}

/// The envelope: `{event, event_ts, payload}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub event: String,
    pub event_ts: i64,
    pub body: WebhookEvent,
}

impl Envelope {
    /// The key that identifies a delivery of this event, for dropping retries.
    pub fn dedup_key(&self) -> String {
        let ids = match &self.body {
            WebhookEvent::EngagementStarted { engagement_id, .. }
            | WebhookEvent::EngagementEnded { engagement_id, .. } => engagement_id.clone(),
            WebhookEvent::RtmsStarted {
                engagement_id,
                rtms_stream_id,
                ..
            }
            | WebhookEvent::RtmsStopped {
                engagement_id,
                rtms_stream_id,
                ..
            }
            | WebhookEvent::RtmsInterrupted {
                engagement_id,
                rtms_stream_id,
            } => format!("{engagement_id}/{rtms_stream_id}"),
            WebhookEvent::AppDeauthorized {
                account_id,
                user_id,
            } => format!("{account_id}/{user_id}"),
            WebhookEvent::UrlValidation { .. } | WebhookEvent::Other { .. } => String::new(),
        };
        format!("{}|{}|{}", self.event, ids, self.event_ts)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("body is not a JSON object: {0}")]
    Json(String),
    #[error("missing or empty field {0}")]
    Missing(&'static str),
}

#[derive(Deserialize)]
struct RawEnvelope {
    event: String,
    #[serde(default)]
    event_ts: Option<Value>,
    #[serde(default)]
    payload: Value,
}

/// Parse a verified body into a typed event.
pub fn parse(body: &[u8]) -> Result<Envelope, ParseError> {
    let raw: RawEnvelope =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let event_ts = raw.event_ts.as_ref().and_then(Value::as_i64).unwrap_or(0);
    let p = &raw.payload;
    let body = match raw.event.as_str() {
        "endpoint.url_validation" => WebhookEvent::UrlValidation {
            plain_token: req_str(p, &["plainToken"], "payload.plainToken")?,
        },
        "contact_center.engagement_started" => WebhookEvent::EngagementStarted {
            engagement_id: engagement_id(p)?,
            account_id: opt_str(p, &["account_id"]),
            agent_user_id: opt_str(p, &["object", "user_id"]),
        },
        "contact_center.engagement_ended" => WebhookEvent::EngagementEnded {
            engagement_id: engagement_id(p)?,
            account_id: opt_str(p, &["account_id"]),
        },
        "contact_center.voice_rtms_started" => WebhookEvent::RtmsStarted {
            engagement_id: req_str(p, &["engagement_id"], "payload.engagement_id")?,
            rtms_stream_id: req_str(p, &["rtms_stream_id"], "payload.rtms_stream_id")?,
            server_urls: req_str(p, &["server_urls"], "payload.server_urls")?,
        },
        "contact_center.voice_rtms_stopped" => WebhookEvent::RtmsStopped {
            engagement_id: req_str(p, &["engagement_id"], "payload.engagement_id")?,
            rtms_stream_id: req_str(p, &["rtms_stream_id"], "payload.rtms_stream_id")?,
            stop_reason: p.get("stop_reason").and_then(Value::as_i64),
        },
        "contact_center.voice_rtms_interrupted" => WebhookEvent::RtmsInterrupted {
            engagement_id: req_str(p, &["engagement_id"], "payload.engagement_id")?,
            rtms_stream_id: req_str(p, &["rtms_stream_id"], "payload.rtms_stream_id")?,
        },
        "app_deauthorized" => WebhookEvent::AppDeauthorized {
            account_id: req_str(p, &["account_id"], "payload.account_id")?,
            user_id: req_str(p, &["user_id"], "payload.user_id")?,
        },
        other => WebhookEvent::Other {
            event: other.to_owned(),
        },
    };
    Ok(Envelope {
        event: raw.event,
        event_ts,
        body,
    })
}

/// Engagement events nest under `payload.object`; accept the flat form too.
fn engagement_id(p: &Value) -> Result<String, ParseError> {
    opt_str(p, &["object", "engagement_id"])
        .or_else(|| opt_str(p, &["engagement_id"]))
        .or_else(|| opt_str(p, &["object", "id"]))
        .ok_or(ParseError::Missing("payload.object.engagement_id"))
}

fn opt_str(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn req_str(v: &Value, path: &[&str], name: &'static str) -> Result<String, ParseError> {
    opt_str(v, path).ok_or(ParseError::Missing(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rtms_started() {
        let body = br#"{"event":"contact_center.voice_rtms_started","event_ts":1700000000123,"payload":{"engagement_id":"ENG123","rtms_stream_id":"abc123stream","server_urls":"wss://rtms.example.invalid/signal","extra":1}}"#;
        let env = parse(body).expect("parses");
        assert_eq!(env.event_ts, 1_700_000_000_123);
        assert_eq!(
            env.body,
            WebhookEvent::RtmsStarted {
                engagement_id: "ENG123".into(),
                rtms_stream_id: "abc123stream".into(),
                server_urls: "wss://rtms.example.invalid/signal".into()
            }
        );
    }

    #[test]
    fn engagement_id_is_read_from_object_or_flat_payload() {
        let nested = br#"{"event":"contact_center.engagement_started","event_ts":1,"payload":{"account_id":"A","object":{"engagement_id":"E1"}}}"#;
        let flat = br#"{"event":"contact_center.engagement_ended","event_ts":1,"payload":{"engagement_id":"E2"}}"#;
        assert!(matches!(parse(nested).expect("nested").body,
            WebhookEvent::EngagementStarted { engagement_id, account_id, agent_user_id: None } if engagement_id == "E1" && account_id.as_deref() == Some("A")));
        assert!(matches!(parse(flat).expect("flat").body,
            WebhookEvent::EngagementEnded { engagement_id, .. } if engagement_id == "E2"));
    }

    #[test]
    fn app_deauthorized_names_the_account_and_user() {
        let body = br#"{"event":"app_deauthorized","event_ts":5,"payload":{"account_id":"A","user_id":"U","client_id":"C","deauthorization_time":"2026-01-01T00:00:00Z"}}"#;
        let env = parse(body).expect("parses");
        assert_eq!(
            env.body,
            WebhookEvent::AppDeauthorized {
                account_id: "A".into(),
                user_id: "U".into()
            }
        );
        assert_eq!(env.dedup_key(), "app_deauthorized|A/U|5");
        let missing = br#"{"event":"app_deauthorized","payload":{"account_id":"A"}}"#;
        assert_eq!(
            parse(missing).expect_err("missing"),
            ParseError::Missing("payload.user_id")
        );
    }

    #[test]
    fn unknown_events_are_other_and_missing_fields_are_named() {
        let unknown = br#"{"event":"meeting.started","payload":{}}"#;
        assert!(matches!(
            parse(unknown).expect("ok").body,
            WebhookEvent::Other { .. }
        ));
        let missing =
            br#"{"event":"contact_center.voice_rtms_started","payload":{"engagement_id":"E"}}"#;
        assert_eq!(
            parse(missing).expect_err("missing"),
            ParseError::Missing("payload.rtms_stream_id")
        );
        assert!(matches!(parse(b"not json"), Err(ParseError::Json(_))));
        assert!(matches!(parse(b"[1,2]"), Err(ParseError::Json(_))));
    }
}
