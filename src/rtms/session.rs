//! One RTMS stream: its signaling and media sockets and their loop.
//!
//! Connects to the signaling URL, handshakes, opens the audio socket (and a
//! transcript socket when Zoom offers one), sends CLIENT_READY_ACK, answers
//! keep-alives on every socket, and measures audio per channel. Reconnects
//! from scratch after a lost connection (protocol doc §17), stops on
//! TERMINATED, on cancel, or when the reconnection window is spent.

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::manager::{SessionDeps, StreamSpec};
use super::protocol::{self, Incoming, media_type, session_state, status, stream_state};
use crate::status::{ChannelView, Level, StreamView, TranscriptLine};
use crate::time::{now_ms, rfc3339_ms};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Every how many audio frames a "Received N audio chunks" line is published.
pub const CHUNK_REPORT_EVERY: u64 = 50;
/// How often the stream view (meters, counts) is published while streaming.
const VIEW_INTERVAL: Duration = Duration::from_millis(200);
/// How long after losing the connection we keep trying (Zoom waits ~60 s).
const RECONNECT_WINDOW: Duration = Duration::from_secs(60);
/// An interruption notice is acted on when nothing is heard for this long
/// (while data flows, it is about a connection we already replaced).
const INTERRUPT_STALE_AFTER: Duration = Duration::from_secs(1);
/// Most buffered audio messages handled per wake before other sockets get a turn.
const DRAIN_BURST: usize = 16;
/// Largest RTMS message accepted (an audio frame is ~1 KB).
const MAX_MESSAGE: usize = 1 << 20;

/// Sent to a running session by the manager.
#[derive(Debug)]
pub enum Control {
    /// Zoom re-sent `voice_rtms_started` (server failover): redo the
    /// connection, possibly at a new URL.
    Restart { server_urls: String },
    /// Zoom says our signaling dropped (`voice_rtms_interrupted`).
    Interrupted,
}

/// Why one connection attempt ended.
#[derive(Debug)]
enum Ended {
    /// The stream is over (TERMINATED / session STOPPED).
    Terminated { reason: i64 },
    /// Asked to stop (stopped webhook, engagement ended, shutdown).
    Cancelled,
    /// Connection lost or refused transiently: try again.
    Lost(String),
    /// Refused for good (bad signature, unknown stream, …).
    Refused { code: i64, reason: String },
    /// Restart requested with this URL.
    Restart(String),
}

/// How the whole session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Terminated { reason: i64 },
    Stopped,
    Failed(String),
}

#[derive(Debug, Default)]
struct Channel {
    id: String,
    role: &'static str,
    frames: u64,
    level: f32,
    peak: f32,
}

/// Per-stream counters and the scratch buffer; lives across reconnections.
struct Meter {
    channels: Vec<Channel>,
    frames: u64,
    transcripts: u64,
    /// Frames / transcripts already added to the engine counters.
    flushed: (u64, u64),
    pcm: Vec<u8>,
    dirty: bool,
}

impl Meter {
    fn new() -> Self {
        Self {
            channels: Vec::with_capacity(2),
            frames: 0,
            transcripts: 0,
            flushed: (0, 0),
            pcm: Vec::with_capacity(4096),
            dirty: true,
        }
    }

    fn channel(&mut self, id: &str) -> &mut Channel {
        let pos = match self.channels.iter().position(|c| c.id == id) {
            Some(pos) => pos,
            None => {
                self.channels.push(Channel {
                    id: id.to_owned(),
                    ..Channel::default()
                });
                self.channels.len() - 1
            }
        };
        &mut self.channels[pos]
    }

    /// Count and measure one audio frame. Returns true on every
    /// [`CHUNK_REPORT_EVERY`]th frame.
    fn audio(&mut self, frame: &protocol::AudioFrame<'_>) -> bool {
        self.pcm.clear();
        let level = match base64::engine::general_purpose::STANDARD
            .decode_vec(frame.data.as_bytes(), &mut self.pcm)
        {
            Ok(()) => protocol::l16_rms(&self.pcm),
            Err(_) => 0.0,
        };
        let ch = self.channel(&frame.channel);
        ch.frames += 1;
        ch.level = level;
        ch.peak = ch.peak.max(level);
        self.frames += 1;
        self.dirty = true;
        self.frames.is_multiple_of(CHUNK_REPORT_EVERY)
    }

    fn view(&mut self, spec: &StreamSpec, state: &str) -> StreamView {
        let channels = self
            .channels
            .iter_mut()
            .map(|c| {
                let v = ChannelView {
                    channel_id: c.id.clone(),
                    role: c.role.to_owned(),
                    frames: c.frames,
                    level: c.level,
                    peak: c.peak,
                };
                c.peak = c.level;
                v
            })
            .collect();
        self.dirty = false;
        StreamView {
            engagement_id: spec.engagement_id.clone(),
            rtms_stream_id: spec.rtms_stream_id.clone(),
            state: state.to_owned(),
            frames: self.frames,
            transcripts: self.transcripts,
            channels,
            updated_at: rfc3339_ms(now_ms()),
        }
    }
}

pub struct Session {
    spec: StreamSpec,
    deps: SessionDeps,
    cancel: CancellationToken,
    control: mpsc::Receiver<Control>,
    meter: Meter,
    sequence: u64,
    /// The current connection attempt reached streaming.
    streamed: bool,
    /// When any socket last delivered a message.
    last_heard: Instant,
}

/// Where and how the media sockets of a connection were opened.
struct MediaPlan {
    audio_url: String,
    audio_kind: u32,
    signature: String,
}

impl Session {
    pub fn new(
        spec: StreamSpec,
        deps: SessionDeps,
        cancel: CancellationToken,
        control: mpsc::Receiver<Control>,
    ) -> Self {
        Self {
            spec,
            deps,
            cancel,
            control,
            meter: Meter::new(),
            sequence: rand::random::<u32>() as u64,
            streamed: false,
            last_heard: Instant::now(),
        }
    }

    fn status(&self, level: Level, message: impl Into<String>) {
        self.deps
            .bus
            .status(Some(&self.spec.engagement_id), level, message);
    }

    fn publish_view(&mut self, state: &str) {
        let counters = &self.deps.counters;
        counters
            .frames
            .fetch_add(self.meter.frames - self.meter.flushed.0, Ordering::Relaxed);
        counters.transcripts.fetch_add(
            self.meter.transcripts - self.meter.flushed.1,
            Ordering::Relaxed,
        );
        self.meter.flushed = (self.meter.frames, self.meter.transcripts);
        let view = self.meter.view(&self.spec, state);
        self.deps.bus.stream(view);
    }

    /// Run until the stream ends; publishes every state change.
    pub async fn run(mut self) -> Outcome {
        self.status(Level::Info, "Starting RTMS connection");
        self.publish_view("connecting");
        let mut url = self.spec.server_urls.clone();
        let mut lost_since: Option<Instant> = None;
        let mut attempt: u32 = 0;
        let outcome = loop {
            self.streamed = false;
            let ended = self.connect_and_stream(&url).await;
            if self.streamed {
                // Media flowed: a later loss starts a fresh reconnection window.
                lost_since = None;
                attempt = 0;
            }
            match ended {
                Ended::Terminated { reason } => break Outcome::Terminated { reason },
                Ended::Cancelled => break Outcome::Stopped,
                Ended::Restart(new_url) => {
                    tracing::info!(%new_url, "restarting stream connection");
                    self.status(Level::Warning, "RTMS server changed, reconnecting");
                    url = new_url;
                    attempt = 0;
                    lost_since = None;
                }
                Ended::Refused { code, reason } => {
                    let name = protocol::status_name(code);
                    tracing::warn!(code, %reason, "RTMS handshake refused");
                    // A duplicate signaling connection is transient while the
                    // server forgets our previous socket (§4).
                    if code == status::DUPLICATE_SIGNAL_REQUEST && attempt < 3 {
                        attempt += 1;
                        if !self
                            .backoff(Duration::from_millis(1500) * 2u32.pow(attempt - 1))
                            .await
                        {
                            break Outcome::Stopped;
                        }
                        continue;
                    }
                    let detail = if reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {reason}")
                    };
                    break Outcome::Failed(format!(
                        "RTMS handshake refused: {name} ({code}){detail}"
                    ));
                }
                Ended::Lost(why) => {
                    let since = *lost_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= RECONNECT_WINDOW {
                        break Outcome::Failed(format!("RTMS connection lost: {why}"));
                    }
                    tracing::warn!(%why, attempt, "RTMS connection lost, reconnecting");
                    if attempt == 0 {
                        self.status(
                            Level::Warning,
                            format!("RTMS connection lost ({why}), reconnecting"),
                        );
                    }
                    self.publish_view("reconnecting");
                    self.deps
                        .counters
                        .reconnects
                        .fetch_add(1, Ordering::Relaxed);
                    let delay = Duration::from_millis(500) * 2u32.pow(attempt.min(6));
                    attempt += 1;
                    if !self.backoff(delay.min(Duration::from_secs(30))).await {
                        break Outcome::Stopped;
                    }
                }
            }
        };
        match &outcome {
            Outcome::Failed(reason) => {
                self.status(Level::Error, reason.clone());
                self.publish_view("failed");
            }
            Outcome::Terminated { reason } => {
                tracing::info!(
                    reason,
                    name = protocol::stop_reason_name(*reason),
                    "stream terminated by Zoom"
                );
                self.publish_view("stopped");
            }
            Outcome::Stopped => self.publish_view("stopped"),
        }
        self.status(Level::Success, "RTMS stopped");
        tracing::info!(frames = self.meter.frames, ?outcome, "RTMS session ended");
        outcome
    }

    /// Wait `delay` unless cancelled; false when cancelled.
    async fn backoff(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    async fn connect(&self, url: &str) -> Result<Ws, String> {
        // Small buffers: a stream has up to three sockets and an instance
        // thousands of streams; RTMS messages are about 1 KB.
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(MAX_MESSAGE);
        config.max_frame_size = Some(MAX_MESSAGE);
        config.read_buffer_size = 16 * 1024;
        config.write_buffer_size = 0;
        config.max_write_buffer_size = 1 << 20;
        let connector = Connector::Rustls(self.deps.tls.clone());
        let connecting = tokio_tungstenite::connect_async_tls_with_config(
            url,
            Some(config),
            true,
            Some(connector),
        );
        match timeout(self.deps.config.connect_timeout, connecting).await {
            Err(_) => Err(format!("connecting to {url} timed out")),
            Ok(Err(e)) => Err(format!("cannot connect to {url}: {e}")),
            Ok(Ok((ws, _))) => Ok(ws),
        }
    }

    /// Read until a handshake response arrives, answering keep-alives.
    async fn await_response(&mut self, ws: &mut Ws, want: u32) -> Result<Incoming<'static>, Ended> {
        let deadline = Instant::now() + self.deps.config.handshake_timeout;
        loop {
            let next = tokio::select! {
                _ = self.cancel.cancelled() => return Err(Ended::Cancelled),
                r = tokio::time::timeout_at(deadline, ws.next()) => r,
            };
            let msg = match next {
                Err(_) => return Err(Ended::Lost("no handshake response in time".into())),
                Ok(None) => return Err(Ended::Lost("closed during handshake".into())),
                Ok(Some(Err(e))) => return Err(Ended::Lost(format!("handshake: {e}"))),
                Ok(Some(Ok(m))) => m,
            };
            let Some(bytes) = payload(&msg) else {
                if let Message::Close(frame) = msg {
                    return Err(Ended::Lost(format!(
                        "closed during handshake ({})",
                        close_text(frame.as_ref())
                    )));
                }
                continue;
            };
            match protocol::decode(bytes) {
                Ok(Incoming::KeepAlive {
                    timestamp,
                    sequence,
                }) => {
                    let _ = send(ws, &protocol::KeepAliveResp::answer(timestamp, sequence)).await;
                }
                Ok(m @ Incoming::SignalingHandshake { .. })
                    if want == protocol::msg::SIGNALING_HAND_SHAKE_RESP =>
                {
                    return Ok(into_static(m));
                }
                Ok(m @ Incoming::DataHandshake { .. })
                    if want == protocol::msg::DATA_HAND_SHAKE_RESP =>
                {
                    return Ok(into_static(m));
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "ignored message during handshake"),
            }
        }
    }

    /// Open one media socket and handshake it. `Ok(None)` when refused and
    /// `optional` (the stream goes on without it).
    async fn open_media(
        &mut self,
        url: &str,
        kind: u32,
        signature: &str,
        optional: bool,
    ) -> Result<Option<Ws>, Ended> {
        let mut ws = match self.connect(url).await {
            Ok(ws) => ws,
            Err(e) if optional => {
                tracing::warn!(error = %e, "transcript socket unavailable");
                return Ok(None);
            }
            Err(e) => return Err(Ended::Lost(e)),
        };
        let seq = self.next_sequence();
        let req = protocol::DataHandshake::new(
            seq,
            &self.spec.engagement_id,
            &self.spec.rtms_stream_id,
            signature,
            kind,
        );
        send(&mut ws, &req).await.map_err(Ended::Lost)?;
        match self
            .await_response(&mut ws, protocol::msg::DATA_HAND_SHAKE_RESP)
            .await?
        {
            Incoming::DataHandshake {
                status_code: 0,
                payload_encrypted,
                audio,
                ..
            } => {
                if payload_encrypted {
                    return Err(Ended::Refused {
                        code: -1,
                        reason: "Zoom asked for payload encryption, which is not supported".into(),
                    });
                }
                if let Some(a) = audio
                    && a != protocol::AudioParams::L16_16K_MONO_20MS
                {
                    tracing::warn!(?a, "server confirmed different audio parameters");
                }
                Ok(Some(ws))
            }
            Incoming::DataHandshake {
                status_code,
                reason,
                ..
            } if optional => {
                tracing::warn!(status_code, %reason, "transcript socket refused");
                let _ = ws.close(None).await;
                Ok(None)
            }
            Incoming::DataHandshake {
                status_code,
                reason,
                ..
            } => Err(Ended::Refused {
                code: status_code,
                reason,
            }),
            _ => Err(Ended::Lost("unexpected handshake response".into())),
        }
    }

    async fn connect_and_stream(&mut self, url: &str) -> Ended {
        let signature = protocol::signature(
            &self.deps.client_id,
            self.deps.client_secret.expose(),
            &self.spec.engagement_id,
            &self.spec.rtms_stream_id,
        );
        let mut sig = match self.connect(url).await {
            Ok(ws) => ws,
            Err(e) => return Ended::Lost(e),
        };
        let seq = self.next_sequence();
        let hello = protocol::SignalingHandshake::new(
            seq,
            &self.spec.engagement_id,
            &self.spec.rtms_stream_id,
            &signature,
        );
        if let Err(e) = send(&mut sig, &hello).await {
            return Ended::Lost(e);
        }
        let urls = match self
            .await_response(&mut sig, protocol::msg::SIGNALING_HAND_SHAKE_RESP)
            .await
        {
            Ok(Incoming::SignalingHandshake {
                status_code: 0,
                urls,
                ..
            }) => urls,
            Ok(Incoming::SignalingHandshake {
                status_code,
                reason,
                ..
            }) => {
                let _ = sig.close(None).await;
                return Ended::Refused {
                    code: status_code,
                    reason,
                };
            }
            Ok(_) => return Ended::Lost("unexpected handshake response".into()),
            Err(e) => return e,
        };

        // Audio from its own URL, else from `all`; transcripts on their own
        // socket when Zoom offers one (what the official SDK does, §7).
        let (audio_url, audio_kind) = match (&urls.audio, &urls.all) {
            (Some(a), _) => (a.clone(), media_type::AUDIO),
            (None, Some(all)) => (all.clone(), media_type::AUDIO | media_type::TRANSCRIPT),
            (None, None) => {
                let _ = sig.close(None).await;
                return Ended::Refused {
                    code: -1,
                    reason: "handshake response has no audio media URL".into(),
                };
            }
        };
        let mut audio = match self
            .open_media(&audio_url, audio_kind, &signature, false)
            .await
        {
            Ok(Some(ws)) => ws,
            Ok(None) => return Ended::Lost("audio socket unavailable".into()),
            Err(e) => {
                let _ = sig.close(None).await;
                return e;
            }
        };
        if let Err(e) = send(
            &mut sig,
            &protocol::ClientReadyAck::new(&self.spec.rtms_stream_id),
        )
        .await
        {
            return Ended::Lost(e);
        }
        let mut transcript = None;
        if audio_kind == media_type::AUDIO
            && let Some(turl) = urls.transcript.clone()
        {
            match self
                .open_media(&turl, media_type::TRANSCRIPT, &signature, true)
                .await
            {
                Ok(Some(ws)) => {
                    if let Err(e) = send(
                        &mut sig,
                        &protocol::ClientReadyAck::new(&self.spec.rtms_stream_id),
                    )
                    .await
                    {
                        return Ended::Lost(e);
                    }
                    transcript = Some(ws);
                }
                Ok(None) => {}
                Err(e) => return e,
            }
        }
        let _ = send(&mut sig, &protocol::EventSubscription::zcc_voice()).await;
        tracing::info!(%audio_url, transcript = transcript.is_some(), "RTMS streaming");
        self.streamed = true;
        self.publish_view("streaming");

        let plan = MediaPlan {
            audio_url,
            audio_kind,
            signature,
        };
        let ended = self
            .stream(&mut sig, &mut audio, &mut transcript, &plan)
            .await;
        let code = match &ended {
            Ended::Cancelled | Ended::Terminated { .. } => CloseCode::Normal,
            _ => CloseCode::Away,
        };
        close(&mut sig, code).await;
        close(&mut audio, code).await;
        if let Some(t) = transcript.as_mut() {
            close(t, code).await;
        }
        ended
    }

    async fn stream(
        &mut self,
        sig: &mut Ws,
        audio: &mut Ws,
        transcript: &mut Option<Ws>,
        plan: &MediaPlan,
    ) -> Ended {
        let mut tick = tokio::time::interval(VIEW_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let idle_timeout = self.deps.config.idle_timeout;
        self.last_heard = Instant::now();
        // Set by an interruption notice that arrived while data was flowing.
        let mut suspect_since: Option<Instant> = None;
        let cancelled = self.cancel.clone().cancelled_owned();
        tokio::pin!(cancelled);
        loop {
            tokio::select! {
                biased;
                _ = &mut cancelled => return Ended::Cancelled,
                ctl = self.control.recv() => match ctl {
                    Some(Control::Restart { server_urls }) => return Ended::Restart(server_urls),
                    // Zoom reports a drop it saw. While media flows the notice
                    // is likely about a connection we already replaced (acting
                    // on it at once would loop): treat it as a suspicion that
                    // a second of silence confirms (checked on the tick).
                    Some(Control::Interrupted) if self.last_heard.elapsed() < INTERRUPT_STALE_AFTER => {
                        tracing::info!("interruption notice while data flows; checking the connection");
                        suspect_since = Some(Instant::now());
                    }
                    Some(Control::Interrupted) => return Ended::Lost("Zoom reported the stream interrupted".into()),
                    None => return Ended::Cancelled,
                },
                _ = tick.tick() => {
                    if self.meter.dirty {
                        self.publish_view("streaming");
                    }
                    if let Some(at) = suspect_since {
                        if self.last_heard > at {
                            suspect_since = None;
                        } else if at.elapsed() >= INTERRUPT_STALE_AFTER {
                            return Ended::Lost("Zoom reported the stream interrupted".into());
                        }
                    }
                    if self.last_heard.elapsed() >= idle_timeout {
                        return Ended::Lost(format!(
                            "nothing heard from Zoom for {:.1} s",
                            idle_timeout.as_secs_f32()
                        ));
                    }
                }
                m = sig.next() => {
                    self.last_heard = Instant::now();
                    if let Some(end) = self.on_signaling(sig, m).await {
                        return end;
                    }
                }
                m = audio.next() => {
                    self.last_heard = Instant::now();
                    let mut outcome = self.on_media(audio, m, "audio").await;
                    // Frames arrive in bursts (one per channel per interval):
                    // take what is already buffered before polling every
                    // branch again.
                    let mut drained = 0;
                    while outcome.is_none() && drained < DRAIN_BURST {
                        match audio.next().now_or_never() {
                            Some(m) => outcome = self.on_media(audio, m, "audio").await,
                            None => break,
                        }
                        drained += 1;
                    }
                    match outcome {
                        None => {}
                        // Media-only loss: signaling is up, so reconnect just
                        // the audio socket (protocol doc §17.3).
                        Some(Ended::Lost(why)) => match self.reopen_audio(sig, plan, &why).await {
                            Ok(ws) => *audio = ws,
                            Err(end) => return end,
                        },
                        Some(end) => return end,
                    }
                }
                m = next_opt(transcript) => {
                    if let Some(end) = self.on_media_opt(transcript, m).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Reconnect the audio socket alone, a few times, then give up (the
    /// caller redoes everything).
    async fn reopen_audio(
        &mut self,
        sig: &mut Ws,
        plan: &MediaPlan,
        why: &str,
    ) -> Result<Ws, Ended> {
        tracing::warn!(%why, "audio socket lost; reconnecting it");
        self.status(
            Level::Warning,
            format!("RTMS media connection lost ({why}), reconnecting"),
        );
        self.deps
            .counters
            .reconnects
            .fetch_add(1, Ordering::Relaxed);
        let mut last = Ended::Lost(why.to_owned());
        for attempt in 0..3u32 {
            if !self
                .backoff(Duration::from_millis(250) * 2u32.pow(attempt))
                .await
            {
                return Err(Ended::Cancelled);
            }
            match self
                .open_media(&plan.audio_url, plan.audio_kind, &plan.signature, false)
                .await
            {
                Ok(Some(ws)) => {
                    if let Err(e) = send(
                        sig,
                        &protocol::ClientReadyAck::new(&self.spec.rtms_stream_id),
                    )
                    .await
                    {
                        return Err(Ended::Lost(e));
                    }
                    tracing::info!("audio socket reconnected");
                    self.last_heard = Instant::now();
                    return Ok(ws);
                }
                Ok(None) => {}
                Err(e @ (Ended::Cancelled | Ended::Refused { .. })) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn on_signaling(
        &mut self,
        ws: &mut Ws,
        m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Option<Ended> {
        let msg = match m {
            None => return Some(Ended::Lost("signaling socket closed".into())),
            Some(Err(e)) => return Some(Ended::Lost(format!("signaling: {e}"))),
            Some(Ok(Message::Close(frame))) => {
                return Some(Ended::Lost(format!(
                    "signaling closed by server ({})",
                    close_text(frame.as_ref())
                )));
            }
            Some(Ok(m)) => m,
        };
        let bytes = payload(&msg)?;
        match protocol::decode(bytes) {
            Ok(Incoming::KeepAlive {
                timestamp,
                sequence,
            }) => {
                if let Err(e) =
                    send(ws, &protocol::KeepAliveResp::answer(timestamp, sequence)).await
                {
                    return Some(Ended::Lost(e));
                }
            }
            Ok(Incoming::StreamState { state, reason }) => match state {
                stream_state::TERMINATED => return Some(Ended::Terminated { reason }),
                stream_state::INTERRUPTED => {
                    tracing::warn!(reason, "stream interrupted");
                }
                _ => tracing::debug!(state, reason, "stream state"),
            },
            Ok(Incoming::SessionState { state, reason, .. }) => {
                if state == session_state::STOPPED {
                    tracing::info!(?reason, "RTMS session stopped");
                } else if state == session_state::STARTED {
                    tracing::debug!("RTMS session started");
                }
            }
            Ok(Incoming::Event(e)) => {
                let role = match (e.event_type, e.participant_mode.as_deref()) {
                    (8 | 9, _) | (_, Some("caller")) => Some("caller"),
                    (10 | 11, _) | (_, Some("callee")) => Some("agent"),
                    _ => None,
                };
                if let (Some(role), Some(ch)) = (role, e.channel_id.as_deref()) {
                    let c = self.meter.channel(ch);
                    if c.role != role {
                        c.role = role;
                        self.meter.dirty = true;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "ignored signaling message"),
        }
        None
    }

    async fn on_media(
        &mut self,
        ws: &mut Ws,
        m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        which: &str,
    ) -> Option<Ended> {
        let msg = match m {
            None => return Some(Ended::Lost(format!("{which} socket closed"))),
            Some(Err(e)) => return Some(Ended::Lost(format!("{which}: {e}"))),
            Some(Ok(Message::Close(frame))) => {
                return Some(Ended::Lost(format!(
                    "{which} closed by server ({})",
                    close_text(frame.as_ref())
                )));
            }
            Some(Ok(m)) => m,
        };
        let bytes = payload(&msg)?;
        match protocol::decode(bytes) {
            Ok(Incoming::Audio(frame)) => {
                if self.meter.audio(&frame) {
                    let n = self.meter.frames;
                    self.status(Level::Success, format!("Received {n} audio chunks"));
                }
            }
            Ok(Incoming::Transcript(t)) => {
                self.meter.transcripts += 1;
                let role = self
                    .meter
                    .channels
                    .iter()
                    .find(|c| c.id == t.channel)
                    .map(|c| c.role)
                    .unwrap_or("");
                self.deps.bus.transcript(TranscriptLine {
                    engagement_id: self.spec.engagement_id.clone(),
                    rtms_stream_id: self.spec.rtms_stream_id.clone(),
                    channel_id: t.channel,
                    role: role.to_owned(),
                    text: t.text,
                    timestamp: t.timestamp,
                });
            }
            Ok(Incoming::KeepAlive {
                timestamp,
                sequence,
            }) => {
                if let Err(e) =
                    send(ws, &protocol::KeepAliveResp::answer(timestamp, sequence)).await
                {
                    return Some(Ended::Lost(e));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "ignored media message"),
        }
        None
    }

    /// The transcript socket is optional: when it goes, audio goes on.
    async fn on_media_opt(
        &mut self,
        slot: &mut Option<Ws>,
        m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Option<Ended> {
        let ws = slot.as_mut()?;
        match self.on_media(ws, m, "transcript").await {
            Some(Ended::Lost(why)) => {
                tracing::warn!(%why, "transcript socket lost; audio continues");
                *slot = None;
                None
            }
            other => other,
        }
    }
}

async fn next_opt(
    ws: &mut Option<Ws>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

/// The JSON bytes of a text or binary frame.
fn payload(msg: &Message) -> Option<&[u8]> {
    match msg {
        Message::Text(t) => Some(t.as_bytes()),
        Message::Binary(b) => Some(b),
        _ => None,
    }
}

fn close_text(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) => format!("{} {}", u16::from(f.code), f.reason),
        None => "no close frame".into(),
    }
}

async fn send<T: serde::Serialize>(ws: &mut Ws, message: &T) -> Result<(), String> {
    ws.send(Message::text(protocol::encode(message)))
        .await
        .map_err(|e| format!("send failed: {e}"))
}

async fn close(ws: &mut Ws, code: CloseCode) {
    let frame = CloseFrame {
        code,
        reason: "".into(),
    };
    let _ = timeout(Duration::from_secs(2), ws.close(Some(frame))).await;
}

fn into_static(m: Incoming<'_>) -> Incoming<'static> {
    match m {
        Incoming::SignalingHandshake {
            status_code,
            reason,
            urls,
        } => Incoming::SignalingHandshake {
            status_code,
            reason,
            urls,
        },
        Incoming::DataHandshake {
            status_code,
            reason,
            payload_encrypted,
            audio,
        } => Incoming::DataHandshake {
            status_code,
            reason,
            payload_encrypted,
            audio,
        },
        _ => Incoming::Other(0),
    }
}
