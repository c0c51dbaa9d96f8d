//! The RTMS sockets (`docs/rtms-protocol.md`): one connection handler for
//! the signaling and the media endpoint, which differ only in the handshake
//! they expect, the answer they refuse it with and the counters they keep.
//! A socket's task owns its WebSocket: queued messages out, client messages
//! in, keep-alives, and the end the server or the client chooses.
//!
//! Decides nothing about the stream itself: admission, interruptions and
//! ends are the lifecycle's (`lifecycle.rs`), media is the driver's.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::OUT_QUEUE;
use crate::SimHandle;
use crate::net::ConnInfo;
use crate::protocol::{self, ClientMsg, Handshake, state, status, stop_reason};
use crate::state::{Ending, Peer, Phase, Shared, Stream, lock};
use crate::stats::inc;
use crate::util::now_ms;

/// Unanswered keep-alives that interrupt a socket.
const KEEPALIVE_MISSES: u32 = 3;
/// Largest client message accepted (handshakes are a few hundred bytes).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Longest wait for the client's answer to our Close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Which RTMS endpoint a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Signaling,
    Media,
}

/// An endpoint's first message, as it must be.
enum Hello {
    Signaling(Handshake),
    Media {
        handshake: Handshake,
        media_type: Option<i64>,
        media_params: Option<Value>,
    },
}

impl Hello {
    fn sequence(&self) -> i64 {
        match self {
            Hello::Signaling(h) | Hello::Media { handshake: h, .. } => h.sequence,
        }
    }
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Signaling => "signaling",
            Endpoint::Media => "media",
        }
    }

    /// Count the connection (total and open); the gauge closes it.
    fn opened(self, shared: &Shared) -> OpenGauge<'_> {
        let (total, open) = match self {
            Endpoint::Signaling => (&shared.stats.signaling_total, &shared.stats.signaling_open),
            Endpoint::Media => (&shared.stats.media_total, &shared.stats.media_open),
        };
        inc(total);
        open.fetch_add(1, Ordering::Relaxed);
        OpenGauge(open)
    }

    fn count_handshake(self, shared: &Shared, code: i64) {
        match self {
            Endpoint::Signaling => shared.stats.signaling_handshake(code),
            Endpoint::Media => shared.stats.media_handshake(code),
        }
    }

    /// The first message, if it is this endpoint's handshake.
    fn hello(self, first: &[u8]) -> Result<Hello, (i64, String)> {
        match (self, protocol::parse_client(first)) {
            (Endpoint::Signaling, Ok(ClientMsg::SignalingHandshake(h))) => Ok(Hello::Signaling(h)),
            (
                Endpoint::Media,
                Ok(ClientMsg::MediaHandshake {
                    handshake,
                    media_type,
                    media_params,
                }),
            ) => Ok(Hello::Media {
                handshake,
                media_type,
                media_params,
            }),
            (_, Ok(other)) => {
                let expected = match self {
                    Endpoint::Signaling => "SIGNALING_HAND_SHAKE_REQ",
                    Endpoint::Media => "DATA_HAND_SHAKE_REQ",
                };
                Err((
                    status::INVALID_MESSAGE_TYPE,
                    format!("expected {expected}, got {other:?}"),
                ))
            }
            (_, Err(e)) => Err((status::INVALID_PAYLOAD, e)),
        }
    }

    /// The handshake answer that refuses with `code`.
    fn refusal(self, sequence: i64, code: i64, reason: &str) -> String {
        match self {
            Endpoint::Signaling => protocol::signaling_response(sequence, code, reason, None),
            Endpoint::Media => protocol::media_response(sequence, code, reason, None),
        }
    }
}

pub(super) async fn upgrade(
    State(sim): State<SimHandle>,
    ConnectInfo(ci): ConnectInfo<ConnInfo>,
    ws: WebSocketUpgrade,
    endpoint: Endpoint,
) -> Response {
    let shared = sim.shared.clone();
    let tracker = shared.tracker.clone();
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| tracker.track_future(conn(shared, ci, socket, endpoint)))
}

/// One RTMS connection: the handshake, admission to its stream, the
/// socket's life, and telling the stream it is gone.
async fn conn(shared: Arc<Shared>, ci: ConnInfo, socket: WebSocket, endpoint: Endpoint) {
    let _gauge = endpoint.opened(&shared);
    let (sink, mut rx) = socket.split();
    let Some(first) = first_message(&mut rx, &shared).await else {
        return;
    };
    if shared.stop_answering() {
        hold_silently(&mut rx, &shared).await;
        return;
    }
    let hello = match endpoint.hello(&first) {
        Ok(h) => h,
        Err((code, reason)) => {
            endpoint.count_handshake(&shared, code);
            refuse(sink, endpoint.refusal(0, code, &reason)).await;
            return;
        }
    };
    let (peer, out_rx, end_rx) = new_peer(&ci);
    let admitted = match &hello {
        Hello::Signaling(hs) => shared
            .admit_signaling(hs, peer)
            .map(|s| (s, SocketRole::Signaling)),
        Hello::Media {
            handshake,
            media_type,
            media_params,
        } => shared
            .admit_media(handshake, *media_type, media_params.as_ref(), peer)
            .map(|s| (s, SocketRole::Media(media_socket_kind(*media_type)))),
    };
    let (stream, role) = match admitted {
        Ok(admitted) => admitted,
        Err((code, reason)) => {
            tracing::info!(code, %reason, remote = %ci.remote, endpoint = endpoint.name(), "handshake refused");
            endpoint.count_handshake(&shared, code);
            refuse(sink, endpoint.refusal(hello.sequence(), code, &reason)).await;
            return;
        }
    };
    endpoint.count_handshake(&shared, status::OK);
    let exit = run_socket(&shared, &ci, &stream, sink, rx, out_rx, end_rx, role).await;
    match role {
        SocketRole::Signaling => shared.signaling_gone(&stream, ci.ctl.id, exit),
        SocketRole::Media(_) => shared.media_gone(&stream, ci.ctl.id, exit),
    }
}

/// Decrements an "open" gauge when the connection task ends.
pub(super) struct OpenGauge<'a>(&'a std::sync::atomic::AtomicI64);
impl Drop for OpenGauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
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

async fn refuse(mut sink: SplitSink<WebSocket, Message>, text: String) {
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
    mut sink: SplitSink<WebSocket, Message>,
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
                        let id = rtms_session_id.unwrap_or_else(|| stream.session_id.clone());
                        let st = session_state_of(lock(&stream.inner).phase);
                        let text = state_answer(protocol::MSG_SESSION_STATE_RESP, "rtms_session_id", &id, st);
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            return Exit::ClientGone;
                        }
                    }
                    ClientMsg::StreamStateReq if role == SocketRole::Signaling => {
                        let st = stream_state_of(lock(&stream.inner).phase);
                        let text = state_answer(protocol::MSG_STREAM_STATE_RESP, "rtms_stream_id", &stream.id, st);
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

/// The answer to a session or stream state request.
fn state_answer(msg_type: i64, id_key: &str, id: &str, state: i64) -> String {
    let mut v = serde_json::Map::new();
    v.insert("msg_type".into(), json!(msg_type));
    v.insert(id_key.into(), json!(id));
    v.insert("state".into(), json!(state));
    v.insert("timestamp".into(), json!(now_ms()));
    Value::Object(v).to_string()
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
