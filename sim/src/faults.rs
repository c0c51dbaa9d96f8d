//! Fault switches (`POST /sim/faults`, [`super::SimHandle::apply_faults`]):
//! what a request may ask, the switches' state, and applying a request.
//!
//! A request is a JSON object; every field is optional and only the given
//! ones change anything. Switches (`stop_answering`, `duplicate_signaling`,
//! `participant_info`) stay as set; counted faults (`refuse_handshakes`,
//! `fail_rest`, `fail_token`, `duplicate_webhooks`) apply to the next N
//! occurrences; actions (`drop`, `expire_tokens`, `revoke_refresh_tokens`,
//! `resend_started`, `interrupt`, `tamper_next_app_context`) happen at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::SimError;
use crate::state::{Ending, Shared, Stream, lock};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// Drop RTMS sockets now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop: Option<DropSockets>,
    /// While true the RTMS server goes silent: handshakes get no answer,
    /// keep-alives, events and media stop (sockets stay open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_answering: Option<bool>,
    /// Answer the next `count` RTMS handshakes (signaling or media) with `status_code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse_handshakes: Option<RefuseHandshakes>,
    /// Expire every access token issued so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_tokens: Option<bool>,
    /// Invalidate every refresh token issued so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_refresh_tokens: Option<bool>,
    /// Answer the next `count` REST calls (`/v2/...`) with `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_rest: Option<FailCalls>,
    /// Answer the next `count` token requests (`/oauth/token`) with `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_token: Option<FailCalls>,
    /// Deliver each of the next N webhooks twice (as a Zoom retry would).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_webhooks: Option<u32>,
    /// Re-send `voice_rtms_started` for this engagement's running stream
    /// (Zoom's RTMS server fail-over), same ids and URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resend_started: Option<String>,
    /// Interrupt this engagement's stream: abort its sockets (TCP reset) and
    /// send `voice_rtms_interrupted`; the server then waits for a reconnect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupt: Option<String>,
    /// The next app context has a corrupted ciphertext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tamper_next_app_context: Option<bool>,
    /// What a second signaling handshake for a connected stream gets:
    /// `refuse` (status 8, the default) or `replace` (the old socket is closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_signaling: Option<DuplicateSignaling>,
    /// Spelling of the participant key in ZCC events: `participant_info`,
    /// `paticipant_info` (the typo seen in the field) or `both`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_info: Option<ParticipantInfoKey>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DropSockets {
    /// Only this engagement's stream (default: every stream).
    #[serde(default)]
    pub engagement_id: Option<String>,
    #[serde(default)]
    pub socket: SocketKind,
    #[serde(default)]
    pub mode: DropMode,
    /// WebSocket close code for `mode: close` (default 1000).
    #[serde(default)]
    pub code: Option<u16>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SocketKind {
    Signaling,
    Media,
    #[default]
    All,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DropMode {
    /// A WebSocket close frame.
    #[default]
    Close,
    /// A TCP reset, no close frame.
    Abort,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RefuseHandshakes {
    pub count: u32,
    /// RTMS status code (default 45 INTERNAL_EXCEPTION).
    #[serde(default = "default_refuse_status")]
    pub status_code: i64,
}

fn default_refuse_status() -> i64 {
    super::protocol::status::INTERNAL_EXCEPTION
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FailCalls {
    pub status: u16,
    pub count: u32,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateSignaling {
    #[default]
    Refuse,
    Replace,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum ParticipantInfoKey {
    #[default]
    #[serde(rename = "participant_info")]
    Standard,
    #[serde(rename = "paticipant_info")]
    Typo,
    #[serde(rename = "both")]
    Both,
}

impl ParticipantInfoKey {
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            ParticipantInfoKey::Standard => &["participant_info"],
            ParticipantInfoKey::Typo => &["paticipant_info"],
            ParticipantInfoKey::Both => &["participant_info", "paticipant_info"],
        }
    }
}

/// The switches and counters in force (`GET /sim/faults`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FaultState {
    pub stop_answering: bool,
    pub refuse_handshakes: Option<RefuseHandshakes>,
    pub fail_rest: Option<FailCalls>,
    pub fail_token: Option<FailCalls>,
    pub duplicate_webhooks: u32,
    pub tamper_next_app_context: bool,
    pub duplicate_signaling: DuplicateSignaling,
    pub participant_info: ParticipantInfoKey,
}

impl FaultState {
    /// Take one from a counted fault.
    pub fn take_refusal(&mut self) -> Option<i64> {
        take(&mut self.refuse_handshakes, |r| &mut r.count).map(|r| r.status_code)
    }
    pub fn take_rest_failure(&mut self) -> Option<u16> {
        take(&mut self.fail_rest, |f| &mut f.count).map(|f| f.status)
    }
    pub fn take_token_failure(&mut self) -> Option<u16> {
        take(&mut self.fail_token, |f| &mut f.count).map(|f| f.status)
    }
    pub fn take_duplicate_webhook(&mut self) -> bool {
        if self.duplicate_webhooks > 0 {
            self.duplicate_webhooks -= 1;
            true
        } else {
            false
        }
    }
}

fn take<T: Clone>(slot: &mut Option<T>, count: impl Fn(&mut T) -> &mut u32) -> Option<T> {
    let item = slot.as_mut()?;
    let c = count(item);
    if *c == 0 {
        *slot = None;
        return None;
    }
    *c -= 1;
    let out = item.clone();
    if *count(item) == 0 {
        *slot = None;
    }
    Some(out)
}

impl Shared {
    /// The `stop_answering` switch (read on every frame and keep-alive).
    pub fn stop_answering(&self) -> bool {
        self.stop_answering.load(Ordering::Relaxed)
    }

    /// Apply a fault request (the body of `POST /sim/faults`); returns what
    /// was done, e.g. `["drop: 2 sockets"]`.
    pub(crate) fn apply_faults(&self, req: FaultRequest) -> Result<Vec<String>, SimError> {
        let shared = self;
        let mut done = Vec::new();
        // Validate everything that can fail before changing anything.
        for id in [&req.resend_started, &req.interrupt].into_iter().flatten() {
            if shared.engagement(id).is_none() {
                return Err(SimError::NotFound(format!("unknown engagement {id}")));
            }
        }
        if let Some(f) = req.fail_rest.as_ref().or(req.fail_token.as_ref())
            && !(400..=599).contains(&f.status)
        {
            return Err(SimError::BadRequest("fail status must be 400–599".into()));
        }
        {
            let mut f = lock(&shared.faults);
            if let Some(v) = req.stop_answering {
                f.stop_answering = v;
                shared.stop_answering.store(v, Ordering::Relaxed);
                done.push(format!("stop_answering: {v}"));
            }
            if let Some(r) = req.refuse_handshakes {
                done.push(format!(
                    "refuse_handshakes: next {} with status {}",
                    r.count, r.status_code
                ));
                f.refuse_handshakes = (r.count > 0).then_some(r);
            }
            if let Some(r) = req.fail_rest {
                done.push(format!("fail_rest: next {} with {}", r.count, r.status));
                f.fail_rest = (r.count > 0).then_some(r);
            }
            if let Some(r) = req.fail_token {
                done.push(format!("fail_token: next {} with {}", r.count, r.status));
                f.fail_token = (r.count > 0).then_some(r);
            }
            if let Some(n) = req.duplicate_webhooks {
                f.duplicate_webhooks = n;
                done.push(format!("duplicate_webhooks: next {n}"));
            }
            if let Some(v) = req.tamper_next_app_context {
                f.tamper_next_app_context = v;
                done.push(format!("tamper_next_app_context: {v}"));
            }
            if let Some(v) = req.duplicate_signaling {
                f.duplicate_signaling = v;
                done.push(format!("duplicate_signaling: {v:?}"));
            }
            if let Some(v) = req.participant_info {
                f.participant_info = v;
                done.push(format!("participant_info: {:?}", v.keys()));
            }
        }
        if req.expire_tokens == Some(true) {
            let now = tokio::time::Instant::now();
            let mut st = lock(&shared.state);
            for t in st.access.values_mut() {
                t.expires = now;
            }
            done.push(format!("expire_tokens: {}", st.access.len()));
        }
        if req.revoke_refresh_tokens == Some(true) {
            let mut st = lock(&shared.state);
            let n = st.refresh.len();
            st.refresh.clear();
            done.push(format!("revoke_refresh_tokens: {n}"));
        }
        if let Some(d) = req.drop {
            let ending = match d.mode {
                DropMode::Close => Ending::Close(
                    d.code.unwrap_or(1000),
                    "dropped by a simulator fault".into(),
                ),
                DropMode::Abort => Ending::Abort,
            };
            let n = shared.drop_sockets(d.engagement_id.as_deref(), d.socket, ending);
            done.push(format!("drop: {n} sockets"));
        }
        if let Some(id) = req.resend_started {
            let stream = shared.stream_of(&id).ok_or_else(|| {
                SimError::BadRequest(format!("engagement {id} has no running stream"))
            })?;
            shared.announce_started(&stream);
            done.push("resend_started".into());
        }
        if let Some(id) = req.interrupt {
            if shared.stream_of(&id).is_none() {
                return Err(SimError::BadRequest(format!(
                    "engagement {id} has no running stream"
                )));
            }
            let n = shared.drop_sockets(Some(&id), SocketKind::All, Ending::Abort);
            done.push(format!("interrupt: {n} sockets"));
        }
        Ok(done)
    }

    /// Drop sockets of one stream or all (fault).
    pub(crate) fn drop_sockets(
        &self,
        only: Option<&str>,
        kind: SocketKind,
        ending: Ending,
    ) -> usize {
        let streams: Vec<Arc<Stream>> = {
            let st = lock(&self.state);
            st.streams
                .values()
                .filter(|s| only.is_none_or(|e| s.engagement_id == e))
                .cloned()
                .collect()
        };
        let mut n = 0;
        for s in streams {
            let inner = s.lock();
            if matches!(kind, SocketKind::Signaling | SocketKind::All)
                && let Some(sig) = &inner.signaling
            {
                sig.end(ending.clone());
                n += 1;
            }
            if matches!(kind, SocketKind::Media | SocketKind::All) {
                for m in &inner.media {
                    m.peer.end(ending.clone());
                    n += 1;
                }
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_run_out() {
        let mut f = FaultState {
            fail_rest: Some(FailCalls {
                status: 500,
                count: 2,
            }),
            ..FaultState::default()
        };
        assert_eq!(f.take_rest_failure(), Some(500));
        assert_eq!(f.take_rest_failure(), Some(500));
        assert_eq!(f.take_rest_failure(), None);
        assert!(f.fail_rest.is_none());
    }

    #[test]
    fn requests_parse_from_json_and_reject_unknown_fields() {
        let r: FaultRequest = serde_json::from_str(
            r#"{"drop":{"socket":"media","mode":"abort"},"participant_info":"paticipant_info","refuse_handshakes":{"count":1}}"#,
        )
        .expect("parses");
        assert_eq!(r.drop.as_ref().map(|d| d.mode), Some(DropMode::Abort));
        assert_eq!(r.participant_info, Some(ParticipantInfoKey::Typo));
        assert_eq!(r.refuse_handshakes.map(|x| x.status_code), Some(45));
        assert!(serde_json::from_str::<FaultRequest>(r#"{"explode":true}"#).is_err());
    }
}
