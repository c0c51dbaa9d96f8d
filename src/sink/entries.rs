//! What the downstream feed appends, decided without IO: the fields of an
//! events-stream entry for a status-bus event, and when to try Redis again
//! after a failure. Pure, so both are unit-tested; never touches Redis.

use std::collections::HashMap;
use std::time::Duration;

use crate::status::{BusEvent, Level};
use crate::time::parse_rfc3339_ms;

/// The fields of one stream entry, in order.
pub type Fields = Vec<(&'static str, String)>;

/// Engagements whose latest warning is remembered, at most (a reason is
/// kept only until its stream's next state change).
const MAX_REASONS: usize = 10_000;

/// Turns bus events into events-stream entries. Remembers each stream's
/// last state, so a stream's many view updates (meters, counts) become one
/// entry per change of state, and each engagement's latest warning or error
/// line, which becomes the `reason` of its stream's next state change.
#[derive(Debug, Default)]
pub struct Entries {
    stream_states: HashMap<String, String>,
    reasons: HashMap<String, String>,
}

impl Entries {
    /// The entry for `event` (published at `now_ms`), or None when it is not
    /// published: status lines, stream views without a change of state.
    pub fn entry(&mut self, event: &BusEvent, now_ms: i64) -> Option<Fields> {
        let published_at = now_ms.to_string();
        match event {
            BusEvent::Status(line) => {
                if let (Some(id), Level::Warning | Level::Error) = (&line.engagement_id, line.level)
                {
                    if self.reasons.len() >= MAX_REASONS {
                        self.reasons.clear();
                    }
                    self.reasons.insert(id.clone(), line.message.clone());
                }
                None
            }
            BusEvent::Engagement(e) => {
                // Zoom's time of the start or end (the webhook's event_ts).
                let at = match &e.ended_at {
                    Some(end) if e.state != "active" => end,
                    _ => &e.started_at,
                };
                let ts = parse_rfc3339_ms(at).unwrap_or(now_ms);
                Some(vec![
                    ("type", "engagement".into()),
                    ("engagement", e.engagement_id.clone()),
                    ("state", e.state.clone()),
                    ("ts", ts.to_string()),
                    ("published_at", published_at),
                ])
            }
            BusEvent::Stream(s) => {
                if self.stream_states.get(&s.rtms_stream_id) == Some(&s.state) {
                    return None;
                }
                if matches!(s.state.as_str(), "stopped" | "failed") {
                    self.stream_states.remove(&s.rtms_stream_id);
                } else {
                    self.stream_states
                        .insert(s.rtms_stream_id.clone(), s.state.clone());
                }
                let reason = match s.state.as_str() {
                    "reconnecting" | "failed" | "stopped" => self.reasons.remove(&s.engagement_id),
                    _ => None,
                };
                let ts = parse_rfc3339_ms(&s.updated_at).unwrap_or(now_ms);
                let mut fields = vec![
                    ("type", "stream".into()),
                    ("engagement", s.engagement_id.clone()),
                    ("stream", s.rtms_stream_id.clone()),
                    ("state", s.state.clone()),
                    ("ts", ts.to_string()),
                    ("published_at", published_at),
                ];
                if let Some(reason) = reason {
                    fields.push(("reason", reason));
                }
                Some(fields)
            }
            BusEvent::Transcript(t) => Some(vec![
                ("type", "transcript".into()),
                ("engagement", t.engagement_id.clone()),
                ("stream", t.rtms_stream_id.clone()),
                (
                    "channel",
                    if t.role.is_empty() {
                        "unknown".into()
                    } else {
                        t.role.clone()
                    },
                ),
                ("channel_id", t.channel_id.clone()),
                ("ts", t.timestamp.to_string()),
                ("published_at", published_at),
                ("text", t.text.clone()),
            ]),
        }
    }
}

/// When to try a Redis that failed again: 100 ms, doubling up to 5 s;
/// back to the start after a success.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    failures: u32,
}

pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Backoff {
    /// A failure: how long to wait before the next try.
    pub fn failed(&mut self) -> Duration {
        let delay = BACKOFF_FIRST.saturating_mul(1 << self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        delay.min(BACKOFF_MAX)
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{EngagementView, StatusEvent, StreamView, TranscriptLine};
    use crate::time::rfc3339_ms;

    fn view(state: &str) -> BusEvent {
        BusEvent::Stream(StreamView {
            engagement_id: "E".into(),
            rtms_stream_id: "S".into(),
            state: state.into(),
            frames: 0,
            transcripts: 0,
            channels: vec![],
            updated_at: rfc3339_ms(1_000),
        })
    }

    fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
        fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_stream_is_published_once_per_change_of_state_with_the_reason_it_changed() {
        let mut e = Entries::default();
        let mut states = vec![];
        for s in ["connecting", "streaming", "streaming", "reconnecting"] {
            states.extend(e.entry(&view(s), 5));
        }
        e.entry(
            &BusEvent::Status(StatusEvent {
                id: 1,
                timestamp: rfc3339_ms(2_000),
                message: "Reconnection window spent".into(),
                level: Level::Error,
                engagement_id: Some("E".into()),
            }),
            5,
        );
        states.extend(e.entry(&view("failed"), 5));
        let names: Vec<_> = states
            .iter()
            .map(|f| field(f, "state").expect("state"))
            .collect();
        assert_eq!(names, ["connecting", "streaming", "reconnecting", "failed"]);
        assert_eq!(field(&states[2], "reason"), None);
        assert_eq!(
            field(&states[3], "reason"),
            Some("Reconnection window spent")
        );
        assert_eq!(field(&states[3], "ts"), Some("1000"));
        assert_eq!(field(&states[3], "published_at"), Some("5"));
        assert!(e.stream_states.is_empty() && e.reasons.is_empty());
    }

    #[test]
    fn engagements_carry_zooms_time_and_transcripts_their_words() {
        let mut e = Entries::default();
        let ended = BusEvent::Engagement(EngagementView {
            engagement_id: "E".into(),
            state: "ended".into(),
            started_at: rfc3339_ms(1_000),
            ended_at: Some(rfc3339_ms(9_000)),
            account_id: Some("acct".into()),
            agent_user_id: Some("agent".into()),
        });
        let fields = e.entry(&ended, 10_000).expect("published");
        assert_eq!(field(&fields, "ts"), Some("9000"));
        assert_eq!(field(&fields, "state"), Some("ended"));
        assert!(
            field(&fields, "account").is_none(),
            "no account or user ids"
        );
        let line = BusEvent::Transcript(TranscriptLine {
            engagement_id: "E".into(),
            rtms_stream_id: "S".into(),
            channel_id: "1".into(),
            role: "caller".into(),
            text: "hello".into(),
            timestamp: 42,
        });
        let fields = e.entry(&line, 7).expect("published");
        assert_eq!(field(&fields, "channel"), Some("caller"));
        assert_eq!(field(&fields, "ts"), Some("42"));
        assert_eq!(field(&fields, "text"), Some("hello"));
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_starts_over_after_a_success() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..9).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.succeeded();
        assert_eq!(b.failed(), BACKOFF_FIRST);
    }
}
