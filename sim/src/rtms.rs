//! The RTMS server (`docs/rtms-protocol.md`): the signaling socket, the media
//! sockets, one audio driver per stream, stream lifecycle (start, pause,
//! stop, interruption and reconnect windows), the audio buffered before a
//! stream's first consumer (replayed at once, `buffer_data`) and ZCC voice
//! events.
//!
//! Every socket is one task owning its WebSocket; the rest of the simulator
//! talks to it through a bounded queue of messages and a watch for its end,
//! so nothing awaits while holding a stream's lock.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use base64::Engine as _;
use futures_util::stream::SplitStream;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::SimHandle;
use super::audio;
use super::faults::DuplicateSignaling;
use super::net::ConnInfo;
use super::protocol::{
    self, ClientMsg, Handshake, MEDIA_AUDIO, MEDIA_TRANSCRIPT, state, status, stop_reason,
};
use super::sign;
use super::state::{Ending, MediaPeer, Peer, Phase, Shared, Stream, lock};
use super::stats::inc;
use crate::util::now_ms;

/// Messages queued per socket before frames are dropped (about 2.5 s of audio).
const OUT_QUEUE: usize = 256;
/// Most 20 ms frames the driver catches up after a stall.
const MAX_CATCH_UP: u64 = 10;
/// Free queue slots a socket owed buffered audio keeps (one frame is up to
/// three messages; signaling-side events share nothing with it, but a stop
/// must still fit).
const CATCH_UP_HEADROOM: usize = 8;
/// Unanswered keep-alives that interrupt a socket.
const KEEPALIVE_MISSES: u32 = 3;
/// Largest client message accepted (handshakes are a few hundred bytes).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Longest wait for the client's answer to our Close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

pub(crate) const SIGNALING_PATH: &str = "/rtms/signaling";
pub(crate) const MEDIA_PATH: &str = "/rtms/media";

pub(crate) fn router() -> Router<SimHandle> {
    Router::new()
        .route(SIGNALING_PATH, get(signaling_upgrade))
        .route(MEDIA_PATH, get(media_upgrade))
}

async fn signaling_upgrade(
    State(sim): State<SimHandle>,
    ConnectInfo(ci): ConnectInfo<ConnInfo>,
    ws: WebSocketUpgrade,
) -> Response {
    let shared = sim.shared.clone();
    let tracker = shared.tracker.clone();
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| tracker.track_future(signaling_conn(shared, ci, socket)))
}

async fn media_upgrade(
    State(sim): State<SimHandle>,
    ConnectInfo(ci): ConnectInfo<ConnInfo>,
    ws: WebSocketUpgrade,
) -> Response {
    let shared = sim.shared.clone();
    let tracker = shared.tracker.clone();
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| tracker.track_future(media_conn(shared, ci, socket)))
}

/// Decrements an "open" gauge when the connection task ends.
struct OpenGauge<'a>(&'a std::sync::atomic::AtomicI64);
impl Drop for OpenGauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// The client closed or the connection broke.
    ClientGone,
    /// The server ended it (stop, fault, replaced).
    ServerEnded,
    /// Three keep-alives went unanswered.
    KeepAliveTimeout,
    Shutdown,
}

/// The first data frame, within the handshake timeout.
async fn first_message(rx: &mut SplitStream<WebSocket>, shared: &Shared) -> Option<Vec<u8>> {
    let deadline = Instant::now() + shared.cfg.handshake_timeout;
    loop {
        let next = tokio::select! {
            _ = shared.cancel.cancelled() => return None,
            r = tokio::time::timeout_at(deadline, rx.next()) => r,
        };
        match next {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.as_bytes().to_vec()),
            Ok(Some(Ok(Message::Binary(b)))) => return Some(b.to_vec()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

/// `stop_answering`: keep the socket open, say nothing, until the client
/// gives up or the simulator stops.
async fn hold_silently(rx: &mut SplitStream<WebSocket>, shared: &Shared) {
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            m = rx.next() => match m {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// After our Close frame: read (and drop) what the client still sends until
/// its Close answer, the end of the connection, `CLOSE_WAIT` or shutdown.
/// Dropping the socket with the client's messages unread would reset the
/// connection, and a reset makes the client's kernel discard frames it has
/// received but not yet read. Runs apart from the socket's owner, which
/// forgets the socket at once.
async fn closing_handshake(mut rx: SplitStream<WebSocket>, cancel: CancellationToken) {
    let answered = async {
        while let Some(Ok(m)) = rx.next().await {
            if matches!(m, Message::Close(_)) {
                return;
            }
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::timeout(CLOSE_WAIT, answered) => {}
    }
}

async fn refuse(mut sink: futures_util::stream::SplitSink<WebSocket, Message>, text: String) {
    let _ = sink.send(Message::Text(text.into())).await;
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "handshake refused".into(),
        })))
        .await;
}

fn new_peer(
    ci: &ConnInfo,
) -> (
    Peer,
    mpsc::Receiver<Message>,
    watch::Receiver<Option<Ending>>,
) {
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    let (end, end_rx) = watch::channel(None);
    (
        Peer {
            conn_id: ci.ctl.id,
            tx,
            end,
        },
        rx,
        end_rx,
    )
}

async fn signaling_conn(shared: Arc<Shared>, ci: ConnInfo, socket: WebSocket) {
    inc(&shared.stats.signaling_total);
    shared.stats.signaling_open.fetch_add(1, Ordering::Relaxed);
    let _gauge = OpenGauge(&shared.stats.signaling_open);
    let (sink, mut rx) = socket.split();
    let Some(first) = first_message(&mut rx, &shared).await else {
        return;
    };
    if shared.stop_answering() {
        hold_silently(&mut rx, &shared).await;
        return;
    }
    let hs = match protocol::parse_client(&first) {
        Ok(ClientMsg::SignalingHandshake(h)) => h,
        Ok(other) => {
            shared
                .stats
                .signaling_handshake(status::INVALID_MESSAGE_TYPE);
            let text = protocol::signaling_response(
                0,
                status::INVALID_MESSAGE_TYPE,
                &format!("expected SIGNALING_HAND_SHAKE_REQ, got {other:?}"),
                None,
            );
            refuse(sink, text).await;
            return;
        }
        Err(e) => {
            shared.stats.signaling_handshake(status::INVALID_PAYLOAD);
            refuse(
                sink,
                protocol::signaling_response(0, status::INVALID_PAYLOAD, &e, None),
            )
            .await;
            return;
        }
    };
    let (peer, out_rx, end_rx) = new_peer(&ci);
    let stream = match shared.admit_signaling(&hs, peer) {
        Ok(s) => s,
        Err((code, reason)) => {
            tracing::info!(code, %reason, remote = %ci.remote, "signaling handshake refused");
            shared.stats.signaling_handshake(code);
            refuse(
                sink,
                protocol::signaling_response(hs.sequence, code, &reason, None),
            )
            .await;
            return;
        }
    };
    shared.stats.signaling_handshake(status::OK);
    let exit = run_socket(
        &shared,
        &ci,
        &stream,
        sink,
        rx,
        out_rx,
        end_rx,
        SocketRole::Signaling,
    )
    .await;
    shared.signaling_gone(&stream, ci.ctl.id, exit);
}

async fn media_conn(shared: Arc<Shared>, ci: ConnInfo, socket: WebSocket) {
    inc(&shared.stats.media_total);
    shared.stats.media_open.fetch_add(1, Ordering::Relaxed);
    let _gauge = OpenGauge(&shared.stats.media_open);
    let (sink, mut rx) = socket.split();
    let Some(first) = first_message(&mut rx, &shared).await else {
        return;
    };
    if shared.stop_answering() {
        hold_silently(&mut rx, &shared).await;
        return;
    }
    let (hs, media_type, media_params) = match protocol::parse_client(&first) {
        Ok(ClientMsg::MediaHandshake {
            handshake,
            media_type,
            media_params,
        }) => (handshake, media_type, media_params),
        Ok(other) => {
            shared.stats.media_handshake(status::INVALID_MESSAGE_TYPE);
            let text = protocol::media_response(
                0,
                status::INVALID_MESSAGE_TYPE,
                &format!("expected DATA_HAND_SHAKE_REQ, got {other:?}"),
                None,
            );
            refuse(sink, text).await;
            return;
        }
        Err(e) => {
            shared.stats.media_handshake(status::INVALID_PAYLOAD);
            refuse(
                sink,
                protocol::media_response(0, status::INVALID_PAYLOAD, &e, None),
            )
            .await;
            return;
        }
    };
    let (peer, out_rx, end_rx) = new_peer(&ci);
    let stream = match shared.admit_media(&hs, media_type, media_params.as_ref(), peer) {
        Ok(s) => s,
        Err((code, reason)) => {
            tracing::info!(code, %reason, remote = %ci.remote, "media handshake refused");
            shared.stats.media_handshake(code);
            refuse(
                sink,
                protocol::media_response(hs.sequence, code, &reason, None),
            )
            .await;
            return;
        }
    };
    shared.stats.media_handshake(status::OK);
    let kind = media_socket_kind(media_type);
    let exit = run_socket(
        &shared,
        &ci,
        &stream,
        sink,
        rx,
        out_rx,
        end_rx,
        SocketRole::Media(kind),
    )
    .await;
    shared.media_gone(&stream, ci.ctl.id, exit);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SocketRole {
    Signaling,
    /// A media socket, with what it carries (`audio`, `transcript`, `all`).
    Media(&'static str),
}

impl SocketRole {
    fn name(self) -> &'static str {
        match self {
            SocketRole::Signaling => "signaling",
            SocketRole::Media(kind) => kind,
        }
    }
}

/// What a media socket carries, by its handshake's `media_type`.
fn media_socket_kind(media_type: Option<i64>) -> &'static str {
    match media_type {
        Some(t) if t == i64::from(protocol::MEDIA_AUDIO) => "audio",
        Some(t) if t == i64::from(protocol::MEDIA_TRANSCRIPT) => "transcript",
        _ => "all",
    }
}

/// The life of an admitted socket: queued messages out, client messages in,
/// keep-alives, and the end the server or the client chooses.
#[allow(clippy::too_many_arguments)]
async fn run_socket(
    shared: &Shared,
    ci: &ConnInfo,
    stream: &Arc<Stream>,
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: SplitStream<WebSocket>,
    mut out_rx: mpsc::Receiver<Message>,
    mut end_rx: watch::Receiver<Option<Ending>>,
    role: SocketRole,
) -> Exit {
    let period = shared.cfg.keepalive;
    let mut keepalive = tokio::time::interval_at(Instant::now() + period, period);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ka_sequence = 0u64;
    let mut unanswered = 0u32;
    // When the oldest unanswered keep-alive went out.
    let mut ka_sent_at: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => {
                let _ = sink.send(Message::Close(Some(CloseFrame { code: 1001, reason: "simulator shutting down".into() }))).await;
                return Exit::Shutdown;
            }
            changed = end_rx.changed() => {
                // Whatever was queued before the end goes out first.
                while let Ok(m) = out_rx.try_recv() {
                    if sink.send(m).await.is_err() {
                        break;
                    }
                }
                let ending = if changed.is_ok() { end_rx.borrow().clone() } else { None };
                match ending.unwrap_or(Ending::Close(1000, "stream ended".into())) {
                    Ending::Close(code, reason) => {
                        if sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await.is_ok() {
                            shared.tracker.spawn(closing_handshake(rx, shared.cancel.clone()));
                        }
                    }
                    Ending::Abort => ci.ctl.abort_on_drop(),
                }
                return Exit::ServerEnded;
            }
            _ = keepalive.tick() => {
                if shared.stop_answering() {
                    continue;
                }
                if unanswered >= KEEPALIVE_MISSES {
                    tracing::info!(stream = %stream.id, ?role, "keep-alives unanswered; interrupting the socket");
                    ci.ctl.abort_on_drop();
                    return Exit::KeepAliveTimeout;
                }
                ka_sequence += 1;
                unanswered += 1;
                ka_sent_at.get_or_insert_with(Instant::now);
                inc(&shared.stats.keepalives_sent);
                if sink.send(Message::Text(protocol::keep_alive(now_ms(), ka_sequence).into())).await.is_err() {
                    return Exit::ClientGone;
                }
            }
            // The client's messages (keep-alive answers) and keep-alives come
            // before queued media, so a burst of media never delays them.
            frame = rx.next() => {
                let bytes = match frame {
                    None | Some(Err(_)) => return Exit::ClientGone,
                    Some(Ok(Message::Close(_))) => {
                        let _ = sink.close().await;
                        return Exit::ClientGone;
                    }
                    Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                    Some(Ok(Message::Binary(b))) => b.to_vec(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                };
                let msg = match protocol::parse_client(&bytes) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(stream = %stream.id, ?role, error = %e, "ignoring a malformed client message");
                        continue;
                    }
                };
                match msg {
                    ClientMsg::KeepAliveResp { .. } => {
                        unanswered = 0;
                        shared.stats.keepalive_answered(role.name());
                        if let Some(at) = ka_sent_at.take() {
                            let ms = at.elapsed().as_millis() as u64;
                            shared.stats.keepalive_max_ms.fetch_max(ms, Ordering::Relaxed);
                            if ms > period.as_millis() as u64 {
                                inc(&shared.stats.keepalives_late);
                            }
                        }
                    }
                    ClientMsg::ClientReady => shared.client_ready(stream, matches!(role, SocketRole::Media(_)).then_some(ci.ctl.id)),
                    ClientMsg::EventSubscription(events) if role == SocketRole::Signaling => shared.subscribe(stream, &events),
                    ClientMsg::SessionStateReq { rtms_session_id } if role == SocketRole::Signaling => {
                        let st = session_state_of(lock(&stream.inner).phase);
                        let text = json!({
                            "msg_type": protocol::MSG_SESSION_STATE_RESP,
                            "rtms_session_id": rtms_session_id.unwrap_or_else(|| stream.session_id.clone()),
                            "state": st,
                            "timestamp": now_ms(),
                        }).to_string();
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            return Exit::ClientGone;
                        }
                    }
                    ClientMsg::StreamStateReq if role == SocketRole::Signaling => {
                        let st = stream_state_of(lock(&stream.inner).phase);
                        let text = json!({
                            "msg_type": protocol::MSG_STREAM_STATE_RESP,
                            "rtms_stream_id": stream.id,
                            "state": st,
                            "timestamp": now_ms(),
                        }).to_string();
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            return Exit::ClientGone;
                        }
                    }
                    ClientMsg::StreamCloseReq if role == SocketRole::Signaling => {
                        let text = json!({
                            "msg_type": protocol::MSG_STREAM_CLOSE_RESP,
                            "rtms_stream_id": stream.id,
                            "status_code": 0,
                            "reason": "",
                            "timestamp": now_ms(),
                        }).to_string();
                        let _ = sink.send(Message::Text(text.into())).await;
                        shared.terminate(stream, stop_reason::RECEIVER_REQUEST_CLOSE);
                    }
                    other => tracing::debug!(stream = %stream.id, ?role, msg = ?other, "client message ignored"),
                }
            }
            m = out_rx.recv() => match m {
                Some(m) => {
                    if sink.send(m).await.is_err() {
                        return Exit::ClientGone;
                    }
                }
                None => return Exit::ServerEnded,
            },
        }
    }
}

fn session_state_of(phase: Phase) -> i64 {
    match phase {
        Phase::Waiting => 1,
        Phase::Active | Phase::Interrupted => state::SESSION_STARTED,
        Phase::Paused => state::SESSION_PAUSED,
        Phase::Stopped => state::SESSION_STOPPED,
    }
}

fn stream_state_of(phase: Phase) -> i64 {
    match phase {
        Phase::Waiting => 0,
        Phase::Active => state::STREAM_ACTIVE,
        Phase::Paused => state::STREAM_PAUSED,
        Phase::Interrupted => state::STREAM_INTERRUPTED,
        Phase::Stopped => state::STREAM_TERMINATED,
    }
}

/// The caller (consumer) and agent as ZCC events describe them.
fn participant(stream: &Stream, channel: usize, with_channel: bool) -> Value {
    let mut p = if channel == 0 {
        json!({
            "participant_mode": "caller",
            "phone_number": "+15550100123",
            "user_id": format!("contact-{}", &stream.id[..8]),
            "display_name": CALLER_NAME,
        })
    } else {
        json!({
            "participant_mode": "callee",
            "user_id": stream.agent.user_id,
            "display_name": stream.agent.display_name,
        })
    };
    p["queue_id"] = json!("sim-queue-support");
    p["queue_name"] = json!("Support");
    p["account_id"] = json!(stream.account_id);
    if with_channel {
        p["channel_id"] = json!(audio::CHANNEL_IDS[channel]);
    }
    p
}

const CALLER_NAME: &str = "Casey Caller";
/// `user_id`s on multi-stream frames (meeting-style integers).
const CHANNEL_USER_IDS: [i64; 2] = [16_778_241, 16_778_242];

impl Shared {
    fn check_handshake(&self, hs: &Handshake) -> Result<Arc<Stream>, (i64, String)> {
        if let Some(code) = lock(&self.faults).take_refusal() {
            return Err((code, "refused by a simulator fault".into()));
        }
        let sid = hs.rtms_stream_id.as_deref().ok_or((
            status::INVALID_PAYLOAD,
            "rtms_stream_id is missing".to_string(),
        ))?;
        let iid = hs.instance_id.as_deref().ok_or((
            status::INVALID_PAYLOAD,
            "engagement_id (or meeting_uuid) is missing".to_string(),
        ))?;
        let signature = hs.signature.as_deref().ok_or((
            status::INVALID_SIGNATURE,
            "signature is missing".to_string(),
        ))?;
        let stream = self.stream(sid).ok_or((
            status::INVALID_RTMS_STREAM_ID,
            format!("unknown rtms_stream_id {sid}"),
        ))?;
        let expected = sign::rtms_signature(
            &self.cfg.client_id,
            self.cfg.client_secret.expose(),
            iid,
            sid,
        );
        if !sign::same(signature, &expected) {
            return Err((status::INVALID_SIGNATURE, "invalid signature".into()));
        }
        if iid != stream.engagement_id {
            return Err((
                status::INVALID_RTMS_STREAM_ID,
                "the stream does not belong to this engagement".into(),
            ));
        }
        Ok(stream)
    }

    pub(crate) fn admit_signaling(
        &self,
        hs: &Handshake,
        peer: Peer,
    ) -> Result<Arc<Stream>, (i64, String)> {
        let stream = self.check_handshake(hs)?;
        let mut inner = stream.lock();
        if inner.phase == Phase::Stopped {
            return Err((
                status::INVALID_RTMS_STREAM_ID,
                "the stream is terminated".into(),
            ));
        }
        if let Some(old) = &inner.signaling {
            match lock(&self.faults).duplicate_signaling {
                DuplicateSignaling::Refuse => {
                    return Err((
                        status::DUPLICATE_SIGNAL_REQUEST,
                        "duplicate signal request".into(),
                    ));
                }
                DuplicateSignaling::Replace => {
                    old.end(Ending::Close(
                        1000,
                        "replaced by a new signaling connection".into(),
                    ));
                }
            }
        }
        if hs.buffer_data == Some(false) {
            inner.buffer_from_ms = None;
        }
        let first_packet = *inner.first_packet_ts.get_or_insert_with(now_ms);
        peer.send(protocol::signaling_response(
            hs.sequence,
            status::OK,
            "",
            Some(&self.media_url),
        ));
        peer.send(protocol::first_packet_timestamp(first_packet));
        inner.signaling = Some(peer);
        if inner.phase == Phase::Interrupted {
            inner.phase = Phase::Waiting;
            inner.interrupt_gen += 1;
        }
        drop(inner);
        Ok(stream)
    }

    pub(crate) fn admit_media(
        &self,
        hs: &Handshake,
        media_type: Option<i64>,
        media_params: Option<&Value>,
        peer: Peer,
    ) -> Result<Arc<Stream>, (i64, String)> {
        let stream = self.check_handshake(hs)?;
        let req = protocol::validate_media(media_type, media_params)?;
        let mut inner = stream.lock();
        if inner.phase == Phase::Stopped {
            return Err((
                status::INVALID_RTMS_STREAM_ID,
                "the stream is terminated".into(),
            ));
        }
        if inner.signaling.is_none() {
            return Err((
                status::INVALID_RTMS_STREAM_ID,
                "no signaling connection for this stream".into(),
            ));
        }
        if inner.media.iter().any(|m| m.req.all) || (req.all && !inner.media.is_empty()) {
            return Err((
                status::MEDIA_DATA_ALL_CONNECTION_EXIST,
                "an all-media connection exists for this stream".into(),
            ));
        }
        if inner.media.iter().any(|m| m.req.kinds & req.kinds != 0) {
            return Err((
                status::DUPLICATE_MEDIA_DATA_CONNECTION,
                "this media type is already connected".into(),
            ));
        }
        peer.send(protocol::media_response(
            hs.sequence,
            status::OK,
            "",
            Some(req.params_json()),
        ));
        inner.media.push(MediaPeer {
            peer,
            req,
            ready: false,
            cursor: None,
        });
        drop(inner);
        Ok(stream)
    }

    /// CLIENT_READY_ACK: every media socket handshaken so far (or just the
    /// given one, when the ack came on a media socket) may receive media.
    /// The official SDK sends one ack after all its media handshakes.
    pub(crate) fn client_ready(self: &Shared, stream: &Arc<Stream>, media_conn: Option<u64>) {
        let mut inner = stream.lock();
        let mut any = false;
        // The audio buffered since the stream began (at most `max_buffered`)
        // is owed to the first connection's media sockets, once per kind.
        let now = now_ms();
        let buffered_from = inner
            .buffer_from_ms
            .filter(|_| !self.cfg.max_buffered.is_zero())
            .map(|from| from.max(now - self.cfg.max_buffered.as_millis() as i64));
        let mut delivered = inner.buffer_delivered;
        for m in inner
            .media
            .iter_mut()
            .filter(|m| !m.ready && media_conn.is_none_or(|id| m.peer.conn_id == id))
        {
            m.ready = true;
            any = true;
            if let Some(from) = buffered_from
                && m.req.kinds & !delivered != 0
            {
                m.cursor = Some((from / audio::FRAME_MS) as u64);
                delivered |= m.req.kinds;
            }
        }
        inner.buffer_delivered = delivered;
        if !any {
            return;
        }
        if matches!(inner.phase, Phase::Waiting | Phase::Interrupted) {
            inner.phase = Phase::Active;
            inner.interrupt_gen += 1;
            if let Some(sig) = &inner.signaling {
                sig.send(protocol::stream_state(state::STREAM_ACTIVE, 0, now));
                sig.send(protocol::session_state(
                    state::SESSION_STARTED,
                    &stream.session_id,
                    None,
                    now,
                ));
            }
        }
        if !inner.driver_running {
            inner.driver_running = true;
            drop(inner);
            // The driver needs an owned handle; `Shared` lives in an Arc.
            if let Some(me) = self.self_arc() {
                let s = stream.clone();
                self.tracker.spawn(drive(me, s));
            }
        }
    }

    pub(crate) fn subscribe(&self, stream: &Arc<Stream>, events: &[(i64, bool)]) {
        let newly: Vec<i64> = {
            let mut inner = stream.lock();
            let mut newly = Vec::new();
            for &(t, on) in events {
                if !(0..64).contains(&t) {
                    continue;
                }
                let bit = 1u64 << t;
                if on {
                    if inner.subscribed & bit == 0 {
                        newly.push(t);
                    }
                    inner.subscribed |= bit;
                } else {
                    inner.subscribed &= !bit;
                }
            }
            newly
        };
        // The call is already answered by both parties when the stream starts.
        for t in newly {
            if t == 8 || t == 10 {
                let bit = 1u64 << t;
                let first = {
                    let mut inner = stream.lock();
                    let first = inner.announced & bit == 0;
                    inner.announced |= bit;
                    first
                };
                if first {
                    self.voice_event(stream, t);
                }
            }
        }
    }

    /// Send a ZCC voice event (8–34) if the client subscribed to it.
    pub(crate) fn voice_event(&self, stream: &Stream, event_type: i64) -> bool {
        if !(8..=34).contains(&event_type) {
            return false;
        }
        let keys = lock(&self.faults).participant_info.keys();
        let inner = stream.lock();
        if inner.subscribed & (1u64 << event_type) == 0 {
            return false;
        }
        let Some(sig) = &inner.signaling else {
            return false;
        };
        // Consumer events describe the caller; the rest the agent.
        let p = match event_type {
            8 => Some(participant(stream, 0, true)),
            9 => Some(participant(stream, 0, false)),
            _ => Some(participant(stream, 1, true)),
        };
        let sent = sig.send(protocol::zcc_event(event_type, now_ms(), p.as_ref(), keys));
        if sent {
            inc(&self.stats.events_sent);
        }
        sent
    }

    /// Server-side stop: STOPPED + TERMINATED on signaling, close every
    /// socket, forget the stream, send `voice_rtms_stopped`.
    pub(crate) fn terminate(&self, stream: &Arc<Stream>, reason: i64) {
        {
            let mut inner = stream.lock();
            if inner.phase == Phase::Stopped {
                return;
            }
            inner.phase = Phase::Stopped;
            let now = now_ms();
            if let Some(sig) = &inner.signaling {
                sig.send(protocol::session_state(
                    state::SESSION_STOPPED,
                    &stream.session_id,
                    Some(reason),
                    now,
                ));
                sig.send(protocol::stream_state(
                    state::STREAM_TERMINATED,
                    reason,
                    now,
                ));
                sig.end(Ending::Close(1000, "stream terminated".into()));
            }
            for m in &inner.media {
                m.peer.end(Ending::Close(1000, "stream terminated".into()));
            }
        }
        stream.cancel.cancel();
        {
            let mut st = lock(&self.state);
            st.streams.remove(&stream.id);
            if let Some(e) = st.engagements.get_mut(&stream.engagement_id)
                && e.rtms_stream_id.as_deref() == Some(stream.id.as_str())
            {
                e.rtms_stream_id = None;
            }
        }
        self.stats.streams_active.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(stream = %stream.id, reason, "RTMS stream terminated");
        self.webhook(
            "contact_center.voice_rtms_stopped",
            json!({
                "engagement_id": stream.engagement_id,
                "rtms_stream_id": stream.id,
                "stop_reason": reason,
            }),
        );
    }

    pub(crate) fn set_paused(&self, stream: &Stream, paused: bool) {
        let mut inner = stream.lock();
        let now = now_ms();
        match (inner.phase, paused) {
            (Phase::Active, true) => {
                inner.phase = Phase::Paused;
                if let Some(sig) = &inner.signaling {
                    sig.send(protocol::session_state(
                        state::SESSION_PAUSED,
                        &stream.session_id,
                        None,
                        now,
                    ));
                    sig.send(protocol::stream_state(state::STREAM_PAUSED, 0, now));
                }
            }
            (Phase::Paused, false) => {
                inner.phase = Phase::Active;
                if let Some(sig) = &inner.signaling {
                    sig.send(protocol::session_state(
                        state::SESSION_RESUMED,
                        &stream.session_id,
                        None,
                        now,
                    ));
                    sig.send(protocol::stream_state(state::STREAM_RESUMED, 0, now));
                }
            }
            _ => {}
        }
    }

    /// The signaling socket is gone. Unless the server ended it on purpose,
    /// the stream is interrupted: media sockets are cut, the app is told by
    /// `voice_rtms_interrupted`, and the stream ends if no new signaling
    /// handshake arrives within the reconnect window.
    fn signaling_gone(&self, stream: &Arc<Stream>, conn_id: u64, exit: Exit) {
        if exit == Exit::Shutdown || self.cancel.is_cancelled() {
            return;
        }
        let generation = {
            let mut inner = stream.lock();
            if inner
                .signaling
                .as_ref()
                .is_none_or(|p| p.conn_id != conn_id)
            {
                return; // replaced, or already handled
            }
            inner.signaling = None;
            // Only the first connection gets the audio from before it.
            inner.buffer_from_ms = None;
            if inner.phase == Phase::Stopped {
                return;
            }
            inner.phase = Phase::Interrupted;
            for m in inner.media.drain(..) {
                m.peer.end(Ending::Abort);
            }
            inner.interrupt_gen += 1;
            inner.interrupt_gen
        };
        tracing::info!(stream = %stream.id, ?exit, "signaling lost; stream interrupted");
        self.webhook(
            "contact_center.voice_rtms_interrupted",
            json!({"engagement_id": stream.engagement_id, "rtms_stream_id": stream.id}),
        );
        let reason = if exit == Exit::KeepAliveTimeout {
            stop_reason::KEEP_ALIVE_TIMEOUT
        } else {
            stop_reason::AWAIT_RECONNECTION_TIMEOUT
        };
        self.reconnect_timer(stream, generation, reason);
    }

    /// A media socket is gone: tell the signaling socket (EVENT_UPDATE 7,
    /// STREAM_STATE interrupted/14) and end the stream if no media socket is
    /// back within the reconnect window.
    fn media_gone(&self, stream: &Arc<Stream>, conn_id: u64, exit: Exit) {
        if exit == Exit::Shutdown || self.cancel.is_cancelled() {
            return;
        }
        let generation = {
            let mut inner = stream.lock();
            let before = inner.media.len();
            inner.media.retain(|m| m.peer.conn_id != conn_id);
            if inner.media.len() == before
                || matches!(inner.phase, Phase::Stopped | Phase::Interrupted)
            {
                return;
            }
            let now = now_ms();
            if let Some(sig) = &inner.signaling {
                sig.send(protocol::media_interrupted_event(now));
                sig.send(protocol::stream_state(
                    state::STREAM_INTERRUPTED,
                    stop_reason::DATA_CONNECTION_INTERRUPTED,
                    now,
                ));
            }
            if !inner.media.is_empty() {
                return;
            }
            if inner.phase == Phase::Active {
                inner.phase = Phase::Waiting;
            }
            inner.interrupt_gen += 1;
            inner.interrupt_gen
        };
        tracing::info!(stream = %stream.id, ?exit, "media lost; waiting for a reconnect");
        let reason = if exit == Exit::KeepAliveTimeout {
            stop_reason::KEEP_ALIVE_TIMEOUT
        } else {
            stop_reason::AWAIT_RECONNECTION_TIMEOUT
        };
        self.reconnect_timer(stream, generation, reason);
    }

    fn reconnect_timer(&self, stream: &Arc<Stream>, generation: u64, reason: i64) {
        let Some(me) = self.self_arc() else { return };
        let stream = stream.clone();
        let window = self.cfg.reconnect_window;
        self.tracker.spawn(async move {
            tokio::select! {
                _ = me.cancel.cancelled() => return,
                _ = stream.cancel.cancelled() => return,
                _ = tokio::time::sleep(window) => {}
            }
            let expired = {
                let inner = stream.lock();
                inner.interrupt_gen == generation && inner.phase != Phase::Stopped
            };
            if expired {
                tracing::info!(stream = %stream.id, "no reconnect within the window; ending the stream");
                me.terminate(&stream, reason);
            }
        });
    }

    /// Drop sockets of one stream or all (fault).
    pub(crate) fn drop_sockets(
        &self,
        only: Option<&str>,
        kind: super::faults::SocketKind,
        ending: Ending,
    ) -> usize {
        use super::faults::SocketKind;
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

/// One interval per stream drives both channels' audio and transcripts to
/// every ready media socket. Frame content is a pure function of the stream
/// id and the frame's timestamp, so buffered audio is just older frames: a
/// socket that is owed them (a `cursor`) is sent them in order, as fast as
/// its queue takes them, until it has caught up with the live frame.
async fn drive(shared: Arc<Shared>, stream: Arc<Stream>) {
    let _ = tokio::task::spawn_blocking(audio::warm).await;
    let start = Instant::now();
    let epoch_frame = (now_ms() / audio::FRAME_MS) as u64;
    let mut next_frame = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(audio::FRAME_MS as u64));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = stream.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let due = (start.elapsed().as_millis() / audio::FRAME_MS as u128) as u64;
        if due < next_frame {
            continue;
        }
        // After a stall, catch up a little; older frames are lost like packets.
        let from = next_frame.max(due.saturating_sub(MAX_CATCH_UP - 1));
        if from > next_frame {
            shared
                .stats
                .frames_skipped
                .fetch_add(from - next_frame, Ordering::Relaxed);
        }
        next_frame = due + 1;
        if shared.stop_answering() {
            continue;
        }
        let mut inner = stream.lock();
        if inner.phase != Phase::Active {
            continue;
        }
        for m in inner.media.iter_mut().filter(|m| m.ready) {
            match m.cursor {
                None => {
                    for f in from..=due {
                        send_frame(&shared, &stream, m, epoch_frame + f, false);
                    }
                }
                Some(cursor) => m.cursor = catch_up(&shared, &stream, m, cursor, epoch_frame + due),
            }
        }
    }
}

/// Send the owed frames `cursor..=live` while the socket's queue has room
/// (none is dropped: the rest waits for the next tick). Returns the next
/// owed frame, or None once the socket follows the live frames: when all is
/// sent and its queue has drained to half, so live frames (which a full
/// queue drops) do not land on a replay still in flight.
fn catch_up(
    shared: &Shared,
    stream: &Stream,
    m: &MediaPeer,
    cursor: u64,
    live: u64,
) -> Option<u64> {
    let mut next = cursor;
    while next <= live {
        if m.peer.tx.capacity() < CATCH_UP_HEADROOM {
            return Some(next);
        }
        send_frame(shared, stream, m, next, true);
        next += 1;
    }
    (m.peer.tx.capacity() < OUT_QUEUE / 2).then_some(next)
}

/// One frame's messages (both channels' audio, a transcript when an
/// utterance ends) for one socket; `buffered` when it is owed audio.
fn send_frame(shared: &Shared, stream: &Stream, m: &MediaPeer, frame: u64, buffered: bool) {
    let ts = frame as i64 * audio::FRAME_MS;
    let pos = audio::position(stream.offset, ts);
    {
        if let Some(params) = m.req.audio.filter(|_| m.req.kinds & MEDIA_AUDIO != 0) {
            let fpp = params.frames_per_packet() as u64;
            if (frame + 1).is_multiple_of(fpp) {
                let first = frame + 1 - fpp;
                let first_ts = first as i64 * audio::FRAME_MS;
                let first_pos = audio::position(stream.offset, first_ts);
                for (ch, channel_id) in audio::CHANNEL_IDS.iter().enumerate() {
                    let user = params.multi_stream().then(|| {
                        (
                            CHANNEL_USER_IDS[ch],
                            if ch == 0 {
                                CALLER_NAME
                            } else {
                                stream.agent.display_name.as_str()
                            },
                        )
                    });
                    let text = if params.is_default_format() {
                        protocol::audio_frame(
                            audio::frame_b64(ch, first_pos),
                            first_ts,
                            channel_id,
                            user,
                        )
                    } else {
                        let pcm = audio::render(
                            ch,
                            first_pos,
                            fpp as usize,
                            params.rate_hz(),
                            params.channel == 2,
                        );
                        let b64 = base64::engine::general_purpose::STANDARD.encode(pcm);
                        protocol::audio_frame(&b64, first_ts, channel_id, user)
                    };
                    if m.peer.send(text) {
                        inc(&shared.stats.frames_sent);
                        if buffered {
                            inc(&shared.stats.frames_buffered);
                        }
                    } else {
                        inc(&shared.stats.frames_dropped);
                    }
                }
            }
        }
        if m.req.kinds & MEDIA_TRANSCRIPT != 0
            && let Some((ch, turn)) = audio::utterance_ending_at(pos)
        {
            let start = ts - (audio::UTTERANCE_FRAMES as i64) * audio::FRAME_MS;
            let multi = m.req.audio.is_some_and(|a| a.multi_stream());
            let user = multi.then(|| {
                (
                    CHANNEL_USER_IDS[ch],
                    if ch == 0 {
                        CALLER_NAME
                    } else {
                        stream.agent.display_name.as_str()
                    },
                )
            });
            if m.peer.send(protocol::transcript(
                audio::SCRIPT[turn],
                start,
                ts,
                audio::CHANNEL_IDS[ch],
                user,
            )) {
                inc(&shared.stats.transcripts_sent);
            }
        }
    }
}
