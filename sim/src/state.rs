//! The simulator's world: users and accounts, engagements, RTMS streams,
//! OAuth codes and tokens. One `Shared` per simulator, behind the handle.
//!
//! `Shared`'s methods live with what they own: the world's (users,
//! engagements, lookups) here; a stream's lifecycle in `rtms/lifecycle.rs`
//! and its voice events in `rtms/events.rs`; faults in `faults.rs`; queueing
//! webhooks in `webhooks.rs`.
//!
//! Locks are std mutexes held only for short, non-async sections; a stream
//! has its own lock so thousands of streams do not contend on one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Message;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use super::faults::FaultState;
use super::protocol::MediaRequest;
use super::stats::Stats;
use super::webhooks::Outgoing;
use super::{ClientEvent, SimConfig, SimEngagement, SimUser};
use crate::util::now_ms;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A Zoom-looking id: 16 random bytes, base64url without padding (22 chars).
pub(crate) fn zoom_id() -> String {
    crate::util::random_b64(16)
}

pub(crate) struct Shared {
    /// Itself, for tasks that need an owned handle.
    pub me: std::sync::Weak<Shared>,
    pub cfg: SimConfig,
    pub base_url: Url,
    pub rtms_url: Url,
    /// The one media endpoint every `server_urls` kind points at.
    pub media_url: String,
    /// The script served at `/sim/appssdk.js` (the stand-in or Zoom's SDK).
    pub sdk_js: std::borrow::Cow<'static, str>,
    pub app_url: Mutex<Option<Url>>,
    pub state: Mutex<State>,
    pub stats: Stats,
    pub faults: Mutex<FaultState>,
    /// Hot-path copy of `faults.stop_answering`.
    pub stop_answering: AtomicBool,
    pub webhook_tx: mpsc::UnboundedSender<Outgoing>,
    pub webhook_log: Mutex<VecDeque<super::WebhookDelivery>>,
    pub client_tx: broadcast::Sender<ClientEvent>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    pub http: reqwest::Client,
}

pub(crate) struct State {
    pub users: HashMap<String, SimUser>,
    pub default_user: String,
    pub engagements: HashMap<String, SimEngagement>,
    /// Streams not yet terminated, by stream id.
    pub streams: HashMap<String, Arc<Stream>>,
    pub codes: HashMap<String, AuthCode>,
    pub access: HashMap<String, AccessToken>,
    pub refresh: HashMap<String, RefreshToken>,
}

pub(crate) struct AuthCode {
    pub user_id: String,
    pub redirect_uri: String,
    /// (challenge, method) when PKCE was used.
    pub pkce: Option<(String, String)>,
    pub expires: tokio::time::Instant,
}

pub(crate) struct AccessToken {
    pub user_id: String,
    pub account_id: String,
    pub expires: tokio::time::Instant,
}

pub(crate) struct RefreshToken {
    pub user_id: String,
}

impl State {
    pub fn new() -> Self {
        let mut users = HashMap::new();
        let default = new_user(
            "Avery",
            "Agent",
            zoom_id(),
            "agent@sim.zcc-rtms.invalid".to_string(),
        );
        let default_user = default.user_id.clone();
        users.insert(default.user_id.clone(), default);
        Self {
            users,
            default_user,
            engagements: HashMap::new(),
            streams: HashMap::new(),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
        }
    }

    pub fn default_user(&self) -> SimUser {
        self.users
            .get(&self.default_user)
            .cloned()
            .expect("the default user is never removed")
    }
}

pub(crate) fn new_user(first: &str, last: &str, account_id: String, email: String) -> SimUser {
    SimUser {
        user_id: zoom_id(),
        account_id,
        email,
        first_name: first.into(),
        last_name: last.into(),
        display_name: format!("{first} {last}"),
        role_name: "Member".into(),
    }
}

/// How a connection is told to end.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ending {
    /// Send a close frame with this code and reason.
    Close(u16, String),
    /// Reset the TCP connection, no close frame.
    Abort,
}

/// The server's handle on one RTMS socket.
pub(crate) struct Peer {
    pub conn_id: u64,
    pub tx: mpsc::Sender<Message>,
    pub end: watch::Sender<Option<Ending>>,
}

impl Peer {
    /// Queue a text message; a full queue drops it (slow client) and says so.
    pub fn send(&self, text: String) -> bool {
        self.tx.try_send(Message::Text(text.into())).is_ok()
    }

    pub fn end(&self, ending: Ending) {
        self.end.send_replace(Some(ending));
    }
}

pub(crate) struct MediaPeer {
    pub peer: Peer,
    pub req: MediaRequest,
    /// CLIENT_READY_ACK received for it: media may flow.
    pub ready: bool,
    /// While it is behind (buffered audio being replayed): the next frame
    /// (Unix ms / 20) it is owed. None once it follows the live frames.
    pub cursor: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Phase {
    /// Started; waiting for the client's handshakes and ready ack.
    Waiting,
    Active,
    Paused,
    /// The signaling socket was lost; waiting for a reconnect.
    Interrupted,
    Stopped,
}

pub(crate) struct Stream {
    pub id: String,
    pub engagement_id: String,
    pub account_id: String,
    pub agent: SimUser,
    pub session_id: String,
    /// Where in the audio loop this stream plays.
    pub offset: usize,
    /// Fires when the stream terminates (stops its audio driver).
    pub cancel: CancellationToken,
    pub inner: Mutex<StreamInner>,
}

pub(crate) struct StreamInner {
    pub phase: Phase,
    pub signaling: Option<Peer>,
    pub media: Vec<MediaPeer>,
    /// Subscribed event types (bit n = event type n).
    pub subscribed: u64,
    /// Answer events already sent (bit n = event type n).
    pub announced: u64,
    pub driver_running: bool,
    /// Bumped by every interruption and reconnect; a reconnect timer only
    /// fires if nothing happened since it was set.
    pub interrupt_gen: u64,
    pub first_packet_ts: Option<i64>,
    /// Audio since this time (Unix ms) is owed to the first consumer; gone
    /// once it was delivered, refused (`buffer_data: false`) or the first
    /// connection was lost.
    pub buffer_from_ms: Option<i64>,
    /// Media kinds (bits) that were handed the buffered audio.
    pub buffer_delivered: u8,
}

impl Stream {
    /// `started_ms`: when its audio began (Unix ms), the start of what
    /// Zoom buffers for the first consumer.
    pub fn new(
        engagement: &SimEngagement,
        agent: SimUser,
        started_ms: i64,
        cancel: CancellationToken,
    ) -> Self {
        let id = crate::util::random_hex(16);
        Self {
            offset: super::audio::stream_offset(&id),
            id,
            engagement_id: engagement.engagement_id.clone(),
            account_id: engagement.account_id.clone(),
            agent,
            session_id: crate::util::random_hex(16),
            cancel,
            inner: Mutex::new(StreamInner {
                phase: Phase::Waiting,
                signaling: None,
                media: Vec::new(),
                subscribed: 0,
                announced: 0,
                driver_running: false,
                interrupt_gen: 0,
                first_packet_ts: None,
                buffer_from_ms: Some(started_ms),
                buffer_delivered: 0,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, StreamInner> {
        lock(&self.inner)
    }
}

impl Shared {
    /// Itself as an owned handle, for tasks it spawns (None while dropping).
    pub(crate) fn self_arc(&self) -> Option<Arc<Shared>> {
        self.me.upgrade()
    }

    pub fn engagement(&self, id: &str) -> Option<SimEngagement> {
        lock(&self.state).engagements.get(id).cloned()
    }

    pub fn user(&self, id: &str) -> Option<SimUser> {
        lock(&self.state).users.get(id).cloned()
    }

    pub fn create_user(&self) -> SimUser {
        self.create_user_in(None, "Member")
    }

    pub fn create_user_in(&self, account_id: Option<&str>, role_name: &str) -> SimUser {
        let mut st = lock(&self.state);
        let n = st.users.len() + 1;
        let mut user = new_user(
            "Agent",
            &format!("Number{n}"),
            account_id.map_or_else(zoom_id, str::to_owned),
            format!("agent{n}@sim.zcc-rtms.invalid"),
        );
        user.role_name = role_name.to_owned();
        st.users.insert(user.user_id.clone(), user.clone());
        user
    }

    /// Start an engagement for `user_id` and announce it.
    pub fn create_engagement(&self, user_id: &str) -> Result<SimEngagement, super::SimError> {
        let engagement = {
            let mut st = lock(&self.state);
            let user = st
                .users
                .get(user_id)
                .cloned()
                .ok_or_else(|| super::SimError::NotFound(format!("unknown user {user_id}")))?;
            let e = SimEngagement {
                engagement_id: zoom_id(),
                state: "active".into(),
                started_at_ms: now_ms(),
                ended_at_ms: None,
                account_id: user.account_id.clone(),
                user_id: user.user_id.clone(),
                rtms_stream_id: None,
            };
            st.engagements.insert(e.engagement_id.clone(), e.clone());
            e
        };
        self.webhook(
            "contact_center.engagement_started",
            serde_json::json!({
                "account_id": engagement.account_id,
                "object": {
                    "engagement_id": engagement.engagement_id,
                    "channel": "voice",
                    "channel_source": "voice",
                    "direction": "inbound",
                    "queue_name": "Support",
                    "user_id": engagement.user_id,
                    "start_time": crate::util::rfc3339_ms(engagement.started_at_ms),
                },
            }),
        );
        let _ = self.client_tx.send(ClientEvent::EngagementStarted {
            engagement: engagement.clone(),
        });
        Ok(engagement)
    }

    /// End an engagement: stop its stream (customer hung up), then announce.
    pub fn end_engagement(&self, id: &str) -> Result<(), super::SimError> {
        let current = self
            .engagement(id)
            .ok_or_else(|| super::SimError::NotFound(format!("unknown engagement {id}")))?;
        if current.state == "ended" {
            return Ok(());
        }
        if let Some(stream) = self.stream_of(id) {
            self.voice_event(&stream, 9);
            self.voice_event(&stream, 11);
            self.terminate(&stream, super::protocol::stop_reason::CUSTOMER_DISCONNECTED);
        }
        let ended = {
            let mut st = lock(&self.state);
            let Some(e) = st.engagements.get_mut(id) else {
                return Err(super::SimError::NotFound(format!(
                    "unknown engagement {id}"
                )));
            };
            e.state = "ended".into();
            e.ended_at_ms = Some(now_ms());
            e.rtms_stream_id = None;
            e.clone()
        };
        self.webhook(
            "contact_center.engagement_ended",
            serde_json::json!({
                "account_id": ended.account_id,
                "object": {
                    "engagement_id": ended.engagement_id,
                    "channel": "voice",
                    "user_id": ended.user_id,
                    "end_time": crate::util::rfc3339_ms(ended.ended_at_ms.unwrap_or_default()),
                },
            }),
        );
        let _ = self
            .client_tx
            .send(ClientEvent::EngagementEnded { engagement: ended });
        Ok(())
    }

    pub fn stream_of(&self, engagement_id: &str) -> Option<Arc<Stream>> {
        let st = lock(&self.state);
        let sid = st.engagements.get(engagement_id)?.rtms_stream_id.clone()?;
        st.streams.get(&sid).cloned()
    }

    pub fn stream(&self, stream_id: &str) -> Option<Arc<Stream>> {
        lock(&self.state).streams.get(stream_id).cloned()
    }
}
