//! One RTMS stream: its signaling and media sockets and their loop.
//!
//! Connects to the signaling URL, handshakes, opens the audio socket (and a
//! transcript socket when Zoom offers one), sends CLIENT_READY_ACK, answers
//! keep-alives on every socket, and measures audio per channel. While
//! streaming, the audio socket is read on a tick, every frame that came since
//! at once, instead of waking the task per frame. What to do
//! when a connection ends is the [`reconnect`](super::reconnect) policy's
//! call; this loop carries it out. Sockets being left (stop, fail-over,
//! reconnection) are closed and read to their end, so frames Zoom already
//! sent are counted. Generic over the WebSocket client ([`Connect`]), so the
//! loop runs on in-memory sockets in tests. Never decides stream ownership.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

use super::backlog::{Backlog, Frame};
use super::meter::Meter;
use super::protocol::{self, Incoming, media_type, session_state, stream_state};
use super::reconnect::{self, Ended, Policy, Step};
use super::transport::{CLOSE_AWAY, CLOSE_NORMAL, Connect, WsMessage};
use super::{Control, Outcome, SessionDeps, StreamSpec};
use crate::status::{Level, TranscriptLine};

pub use super::meter::CHUNK_REPORT_EVERY;

/// How often the stream view (meters, counts) is updated while streaming
/// (published when someone watches).
const VIEW_INTERVAL: Duration = Duration::from_millis(200);
/// An interruption notice is acted on when nothing is heard for this long
/// (while data flows, it is about a connection we already replaced).
const INTERRUPT_STALE_AFTER: Duration = Duration::from_secs(1);
/// How often the audio socket is read while streaming. It is not watched
/// in between: a wake-up per 20 ms frame costs several times the frame's
/// decoding, so each tick reads the ~10 frames (per channel) that came since
/// at once. At 200 ms rather than 100 the engine costs about a quarter less
/// CPU per frame (the wake-up, the read call and the TCP window update are
/// per tick), and a "Received N" line comes at most one tick after its
/// frame, as often as the views are updated. Also the resolution of the
/// silence checks; keep-alives on the audio socket are answered within a
/// tick.
pub const MEDIA_TICK: Duration = Duration::from_millis(200);
/// Time until the next wall-clock multiple of [`MEDIA_TICK`]. Every
/// session ticks on the same grid, so one wake-up of the runtime serves the
/// ticks of many streams rather than each stream waking it on its own.
fn to_next_tick() -> Duration {
    let tick = MEDIA_TICK.as_millis();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    Duration::from_millis((tick - now % tick) as u64)
}
/// Audio messages read on one tick at most; more means we are behind.
const DRAIN_MAX: usize = 64;
/// Audio later than this (ms) means we are behind: the audio socket is
/// then read as data comes until a frame is no later than
/// `CAUGHT_UP_LAG_MS`.
const BEHIND_LAG_MS: i64 = 500;
const CAUGHT_UP_LAG_MS: i64 = 200;
/// How long sockets being left are read for what Zoom already sent.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

type Socket<C> = <C as Connect>::Socket;
type Next<C> = Option<Result<<C as Connect>::Message, <C as Connect>::Error>>;

pub struct Session<C: Connect> {
    spec: StreamSpec,
    deps: SessionDeps,
    connector: C,
    cancel: CancellationToken,
    control: mpsc::Receiver<Control>,
    meter: Meter,
    /// Tells audio Zoom replays from its buffer from live audio.
    backlog: Backlog,
    sequence: u64,
    /// The current connection attempt reached streaming.
    streamed: bool,
    /// Messages received on any socket (the clock is read per tick, not per
    /// message).
    heard: u64,
    /// How late the last audio frame came (ms, see [`Backlog::lag`]).
    lag_ms: i64,
    /// This stream's hand-off to the call recorder (`RECORDINGS_DIR`).
    recording: Option<crate::recording::StreamRecorder>,
}

/// Where and how the audio socket of a connection was opened.
struct MediaPlan {
    audio_url: String,
    audio_kind: u32,
    signature: String,
}

/// When anything was last heard, kept per tick.
struct Silence {
    heard: u64,
    at: Instant,
}

impl<C: Connect> Session<C> {
    pub fn new(
        spec: StreamSpec,
        deps: SessionDeps,
        connector: C,
        cancel: CancellationToken,
        control: mpsc::Receiver<Control>,
    ) -> Self {
        let recording = deps
            .recorder
            .as_ref()
            .and_then(|r| r.stream(&spec.engagement_id));
        Self {
            recording,
            spec,
            deps,
            connector,
            cancel,
            control,
            meter: Meter::new(),
            backlog: Backlog::default(),
            sequence: rand::random::<u32>() as u64,
            streamed: false,
            heard: 0,
            lag_ms: 0,
        }
    }

    fn status(&self, level: Level, message: impl Into<String>) {
        self.deps
            .bus
            .status(Some(&self.spec.engagement_id), level, message);
    }

    fn publish_view(&mut self, state: &str) {
        self.deps.counters.add(&self.meter.unflushed());
        let view = self.meter.view(&self.spec, state);
        self.deps.bus.stream(view);
    }

    /// The periodic update of the view, made in the bus's copy: published
    /// when someone watches, else only kept current for the next snapshot.
    fn update_view(&mut self) {
        self.deps.counters.add(&self.meter.unflushed());
        let watched = self.deps.bus.watched(&self.spec.engagement_id);
        let meter = &mut self.meter;
        let refreshed = self
            .deps
            .bus
            .refresh_stream(&self.spec.rtms_stream_id, watched, |view| {
                if view.state != "streaming" {
                    view.state = "streaming".to_owned();
                }
                meter.refresh(view);
            });
        if watched && !refreshed {
            // Forgotten meanwhile: a whole new view.
            self.publish_view("streaming");
        }
    }

    /// Run until the stream ends; publishes every state change.
    pub async fn run(mut self) -> Outcome {
        self.status(Level::Info, "Starting RTMS connection");
        self.publish_view("connecting");
        let mut url = self.spec.server_urls.clone();
        let mut policy = Policy::new();
        let outcome = loop {
            self.streamed = false;
            let ended = self.connect_and_stream(&url).await;
            match &ended {
                Ended::Refused { code, reason } => {
                    tracing::warn!(code, %reason, "RTMS handshake refused");
                    self.deps.counters.handshake_refused(*code);
                }
                Ended::Restart(new_url) => {
                    tracing::info!(%new_url, "restarting stream connection");
                }
                Ended::Lost(why) => tracing::warn!(%why, "RTMS connection lost"),
                _ => {}
            }
            let why = super::ReconnectReason::of(&ended);
            match policy.decide(ended, self.streamed, Instant::now()) {
                Step::Stop(outcome) => break outcome,
                Step::Retry {
                    after,
                    url: new_url,
                    notice,
                    reconnect,
                } => {
                    if let Some(new_url) = new_url {
                        url = new_url;
                    }
                    if let Some(notice) = notice {
                        self.status(Level::Warning, notice);
                    }
                    if reconnect {
                        self.publish_view("reconnecting");
                        self.deps
                            .counters
                            .reconnects
                            .fetch_add(1, Ordering::Relaxed);
                        self.deps.counters.reconnected(why);
                    }
                    if !self.backoff(after).await {
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
        let frames = self.meter.frames();
        self.status(Level::Success, "RTMS stopped");
        tracing::info!(frames, ?outcome, "RTMS session ended");
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

    async fn connect(&self, url: &str) -> Result<Socket<C>, String> {
        // Boxed: the client's connect future is large, and a session's
        // future is as large as its largest state for its whole life.
        match Box::pin(timeout(
            self.deps.config.connect_timeout,
            self.connector.connect(url),
        ))
        .await
        {
            Err(_) => Err(format!("connecting to {url} timed out")),
            Ok(result) => result,
        }
    }

    /// Read until a handshake response arrives, answering keep-alives.
    async fn await_response(
        &mut self,
        ws: &mut Socket<C>,
        want: u32,
    ) -> Result<Incoming<'static>, Ended> {
        let deadline = Instant::now() + self.deps.config.handshake_timeout;
        loop {
            let next = tokio::select! {
                _ = self.cancel.cancelled() => return Err(Ended::Cancelled),
                r = timeout_at(deadline, ws.next()) => r,
            };
            let msg = match next {
                Err(_) => return Err(Ended::Lost("no handshake response in time".into())),
                Ok(None) => return Err(Ended::Lost("closed during handshake".into())),
                Ok(Some(Err(e))) => return Err(Ended::Lost(format!("handshake: {e}"))),
                Ok(Some(Ok(m))) => m,
            };
            if let Some(close) = msg.close_text() {
                return Err(Ended::Lost(format!("closed during handshake ({close})")));
            }
            let Some(bytes) = msg.payload() else {
                continue;
            };
            match protocol::decode(bytes) {
                Ok(Incoming::KeepAlive {
                    timestamp,
                    sequence,
                }) => {
                    let _ = self.answer_keepalive(ws, timestamp, sequence).await;
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
    ) -> Result<Option<Socket<C>>, Ended> {
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
        send::<C, _>(&mut ws, &req).await.map_err(Ended::Lost)?;
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
                close_now::<C>(&mut ws).await;
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
        if let Err(e) = send::<C, _>(&mut sig, &hello).await {
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
                close_now::<C>(&mut sig).await;
                return Ended::Refused {
                    code: status_code,
                    reason,
                };
            }
            Ok(_) => return Ended::Lost("unexpected handshake response".into()),
            Err(e) => return e,
        };

        // Audio from its own URL, else from `all`; transcripts on their own
        // socket when Zoom offers one (what Zoom's SDK does, docs/rtms-protocol.md §7).
        let (audio_url, audio_kind) = match (&urls.audio, &urls.all) {
            (Some(a), _) => (a.clone(), media_type::AUDIO),
            (None, Some(all)) => (all.clone(), media_type::AUDIO | media_type::TRANSCRIPT),
            (None, None) => {
                close_now::<C>(&mut sig).await;
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
                close_now::<C>(&mut sig).await;
                return e;
            }
        };
        let ready = protocol::ClientReadyAck::new(&self.spec.rtms_stream_id);
        if let Err(e) = send::<C, _>(&mut sig, &ready).await {
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
                    let ready = protocol::ClientReadyAck::new(&self.spec.rtms_stream_id);
                    if let Err(e) = send::<C, _>(&mut sig, &ready).await {
                        return Ended::Lost(e);
                    }
                    transcript = Some(ws);
                }
                Ok(None) => {}
                Err(e) => return e,
            }
        }
        let _ = send::<C, _>(&mut sig, &protocol::EventSubscription::zcc_voice()).await;
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
            Ended::Cancelled | Ended::Terminated { .. } => CLOSE_NORMAL,
            _ => CLOSE_AWAY,
        };
        self.leave(&mut sig, &mut audio, &mut transcript, code)
            .await;
        ended
    }

    /// Close the sockets and read each to its end (the server's close, or
    /// the grace period): frames sent before Zoom saw our close are counted.
    async fn leave(
        &mut self,
        sig: &mut Socket<C>,
        audio: &mut Socket<C>,
        transcript: &mut Option<Socket<C>>,
        code: u16,
    ) {
        let deadline = Instant::now() + CLOSE_GRACE;
        // What audio already holds is read before our close goes: Zoom may
        // have closed it already, and a failed send ends the reading too.
        self.read_ready(audio);
        // The rest as it comes, no longer on a tick.
        C::set_polled(audio, false);
        let _ = timeout_at(deadline, audio.send(C::Message::close(code))).await;
        if let Some(t) = transcript.as_mut() {
            let _ = timeout_at(deadline, t.send(C::Message::close(code))).await;
        }
        let _ = timeout_at(deadline, sig.send(C::Message::close(code))).await;
        self.read_to_end(audio, deadline).await;
        if let Some(t) = transcript.as_mut() {
            self.read_to_end(t, deadline).await;
        }
        // Signaling carries nothing that is counted: its close is awaited
        // only so the server sees an orderly end.
        while let Ok(Some(Ok(m))) = timeout_at(deadline, sig.next()).await {
            if m.close_text().is_some() {
                break;
            }
        }
    }

    async fn read_to_end(&mut self, ws: &mut Socket<C>, deadline: Instant) {
        while let Ok(Some(Ok(m))) = timeout_at(deadline, ws.next()).await {
            if self.counted(m) {
                return;
            }
        }
    }

    /// What already came on a polled socket, up to its close.
    fn read_ready(&mut self, ws: &mut Socket<C>) {
        C::allow_read(ws);
        while let Some(Some(Ok(m))) = ws.next().now_or_never() {
            if self.counted(m) {
                return;
            }
        }
    }

    /// Count a media message read while leaving; true for a close.
    fn counted(&mut self, m: C::Message) -> bool {
        if m.close_text().is_some() {
            return true;
        }
        if let Some(bytes) = m.payload() {
            match protocol::decode(bytes) {
                Ok(Incoming::Audio(frame)) => self.audio(&frame),
                Ok(Incoming::Transcript(t)) => self.transcript(t),
                _ => {}
            }
        }
        false
    }

    async fn stream(
        &mut self,
        sig: &mut Socket<C>,
        audio: &mut Socket<C>,
        transcript: &mut Option<Socket<C>>,
        plan: &MediaPlan,
    ) -> Ended {
        // Keeping up, audio wakes nobody: it is read on the tick, every
        // frame that came since in one go (see `MEDIA_TICK`). Behind (a
        // replayed backlog, an overloaded instance), it is read as it comes,
        // so Zoom's sending is never held back by our ticks.
        let mut behind = false;
        C::set_polled(audio, true);
        let mut tick = tokio::time::interval_at(Instant::now() + to_next_tick(), MEDIA_TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut view_due = Instant::now() + VIEW_INTERVAL;
        let idle_timeout = self.deps.config.idle_timeout;
        let mut silence = Silence {
            heard: self.heard,
            at: Instant::now(),
        };
        // Set by an interruption notice that arrived while data was flowing:
        // when, and what had been heard by then.
        let mut suspect: Option<(Instant, u64)> = None;
        loop {
            tokio::select! {
                biased;
                m = sig.next() => {
                    self.heard += 1;
                    if let Some(end) = self.on_signaling(sig, m).await {
                        return end;
                    }
                }
                m = next_opt::<C>(transcript) => {
                    if let Some(end) = self.on_media_opt(transcript, m).await {
                        return end;
                    }
                }
                ctl = self.control.recv() => {
                    match ctl {
                        Some(Control::Restart { server_urls }) => return Ended::Restart(server_urls),
                        // Zoom reports a drop it saw. While media flows the notice
                        // is likely about a connection we already replaced (acting
                        // on it at once would loop): treat it as a suspicion that
                        // a second of silence confirms (checked on the tick).
                        Some(Control::Interrupted)
                            if self.heard != silence.heard
                                || silence.at.elapsed() < INTERRUPT_STALE_AFTER =>
                        {
                            tracing::info!("interruption notice while data flows; checking the connection");
                            suspect = Some((Instant::now(), self.heard));
                        }
                        Some(Control::Interrupted) => return Ended::Lost("Zoom reported the stream interrupted".into()),
                        Some(Control::Stop) | None => return Ended::Cancelled,
                    }
                }
                now = tick.tick() => {
                    match self.drain_audio(sig, audio, plan, &mut silence).await {
                        Ok(full) => {
                            let late = full || self.lag_ms > BEHIND_LAG_MS;
                            if late != behind {
                                behind = late;
                                C::set_polled(audio, !behind);
                            }
                        }
                        Err(end) => return end,
                    }
                    if now >= view_due {
                        view_due = now + VIEW_INTERVAL;
                        // Cancellation without a `Stop` message (shutdown)
                        // is noticed here: the token's check takes locks.
                        if self.cancel.is_cancelled() {
                            return Ended::Cancelled;
                        }
                        if self.meter.dirty() {
                            self.update_view();
                        }
                    }
                    if self.heard != silence.heard {
                        silence = Silence { heard: self.heard, at: now };
                    }
                    if let Some((at, heard)) = suspect {
                        if self.heard > heard {
                            suspect = None;
                        } else if now.duration_since(at) >= INTERRUPT_STALE_AFTER {
                            return Ended::Lost("Zoom reported the stream interrupted".into());
                        }
                    }
                    if now.duration_since(silence.at) >= idle_timeout {
                        return Ended::Lost(format!(
                            "nothing heard from Zoom for {:.1} s",
                            idle_timeout.as_secs_f32()
                        ));
                    }
                }
                m = audio.next(), if behind => {
                    if let Err(end) = self.on_audio(sig, audio, plan, &mut silence, m).await {
                        return end;
                    }
                    if self.lag_ms <= CAUGHT_UP_LAG_MS {
                        behind = false;
                        C::set_polled(audio, true);
                    }
                }
            }
        }
    }

    /// Handle what arrived on the audio socket since the last tick, at most
    /// `DRAIN_MAX` messages: `Ok(true)` when that many were there.
    async fn drain_audio(
        &mut self,
        sig: &mut Socket<C>,
        audio: &mut Socket<C>,
        plan: &MediaPlan,
        silence: &mut Silence,
    ) -> Result<bool, Ended> {
        C::allow_read(audio);
        for _ in 0..DRAIN_MAX {
            let Some(m) = audio.next().now_or_never() else {
                return Ok(false);
            };
            self.on_audio(sig, audio, plan, silence, m).await?;
        }
        Ok(true)
    }

    /// One message from the audio socket. A lost audio socket is reopened
    /// alone while signaling is up (docs/rtms-protocol.md §17.3).
    async fn on_audio(
        &mut self,
        sig: &mut Socket<C>,
        audio: &mut Socket<C>,
        plan: &MediaPlan,
        silence: &mut Silence,
        m: Next<C>,
    ) -> Result<(), Ended> {
        match self.on_media(audio, m, "audio").await {
            None => Ok(()),
            Some(Ended::Lost(why)) => {
                if let Some(m) = sig.next().now_or_never()
                    && let Some(end) = self.on_signaling(sig, m).await
                {
                    return Err(end);
                }
                let mut ws = Box::pin(self.reopen_audio(sig, plan, &why)).await?;
                C::set_polled(&mut ws, true);
                *audio = ws;
                *silence = Silence {
                    heard: self.heard,
                    at: Instant::now(),
                };
                Ok(())
            }
            Some(end) => Err(end),
        }
    }

    /// Reconnect the audio socket alone, a few times, then give up (the
    /// caller redoes everything).
    async fn reopen_audio(
        &mut self,
        sig: &mut Socket<C>,
        plan: &MediaPlan,
        why: &str,
    ) -> Result<Socket<C>, Ended> {
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
        let mut attempt = 0;
        while let Some(delay) = reconnect::media_retry(attempt) {
            attempt += 1;
            if !self.backoff(delay).await {
                return Err(Ended::Cancelled);
            }
            match self
                .open_media(&plan.audio_url, plan.audio_kind, &plan.signature, false)
                .await
            {
                Ok(Some(ws)) => {
                    let ready = protocol::ClientReadyAck::new(&self.spec.rtms_stream_id);
                    if let Err(e) = send::<C, _>(sig, &ready).await {
                        return Err(Ended::Lost(e));
                    }
                    tracing::info!("audio socket reconnected");
                    return Ok(ws);
                }
                Ok(None) => {}
                Err(e @ (Ended::Cancelled | Ended::Refused { .. })) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn on_signaling(&mut self, ws: &mut Socket<C>, m: Next<C>) -> Option<Ended> {
        let msg = match m {
            None => return Some(Ended::Lost("signaling socket closed".into())),
            Some(Err(e)) => return Some(Ended::Lost(format!("signaling: {e}"))),
            Some(Ok(m)) => m,
        };
        if let Some(close) = msg.close_text() {
            return Some(Ended::Lost(format!("signaling closed by server ({close})")));
        }
        let bytes = msg.payload()?;
        match protocol::decode(bytes) {
            Ok(Incoming::KeepAlive {
                timestamp,
                sequence,
            }) => {
                if let Err(e) = self.answer_keepalive(ws, timestamp, sequence).await {
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
            Ok(Incoming::Event(e)) => self.meter.event(
                e.event_type,
                e.participant_mode.as_deref(),
                e.channel_id.as_deref(),
            ),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "ignored signaling message"),
        }
        None
    }

    async fn on_media(&mut self, ws: &mut Socket<C>, m: Next<C>, which: &str) -> Option<Ended> {
        self.heard += 1;
        let msg = match m {
            None => return Some(Ended::Lost(format!("{which} socket closed"))),
            Some(Err(e)) => return Some(Ended::Lost(format!("{which}: {e}"))),
            Some(Ok(m)) => m,
        };
        if let Some(close) = msg.close_text() {
            return Some(Ended::Lost(format!("{which} closed by server ({close})")));
        }
        let bytes = msg.payload()?;
        match protocol::decode(bytes) {
            Ok(Incoming::Audio(frame)) => self.audio(&frame),
            Ok(Incoming::Transcript(t)) => self.transcript(t),
            Ok(Incoming::KeepAlive {
                timestamp,
                sequence,
            }) => {
                if let Err(e) = self.answer_keepalive(ws, timestamp, sequence).await {
                    return Some(Ended::Lost(e));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "ignored media message"),
        }
        None
    }

    /// Answer a keep-alive, timing the answer.
    async fn answer_keepalive(
        &self,
        ws: &mut Socket<C>,
        timestamp: i64,
        sequence: Option<i64>,
    ) -> Result<(), String> {
        let read = Instant::now();
        let sent = send::<C, _>(ws, &protocol::KeepAliveResp::answer(timestamp, sequence)).await;
        self.deps.counters.keepalive(read.elapsed(), timestamp);
        sent
    }

    /// Audio replayed from Zoom's buffer is counted, not measured, and
    /// reported as one line once live audio comes; both are recorded.
    fn audio(&mut self, frame: &protocol::AudioFrame<'_>) {
        if let Some(r) = &mut self.recording {
            r.frame(&frame.channel, frame.timestamp, frame.data.as_bytes());
        }
        let now = crate::time::now_ms();
        self.lag_ms = self.backlog.lag(frame.timestamp, now);
        match self.backlog.frame(frame.timestamp, now) {
            Frame::Buffered => self.meter.buffered(&frame.channel),
            Frame::Live { caught_up } => {
                if let Some(c) = caught_up {
                    self.status(Level::Success, c.message());
                }
                if self.meter.audio(&frame.channel, frame.data.as_bytes()) {
                    let n = self.meter.frames();
                    self.status(Level::Success, format!("Received {n} audio chunks"));
                }
            }
        }
        if let Some(sink) = &self.deps.sink {
            sink.frame(&self.spec, frame, self.meter.frames());
        }
    }

    fn transcript(&mut self, t: protocol::TranscriptFrame) {
        let role = self.meter.transcript(&t.channel);
        self.deps.bus.transcript(TranscriptLine {
            engagement_id: self.spec.engagement_id.clone(),
            rtms_stream_id: self.spec.rtms_stream_id.clone(),
            channel_id: t.channel,
            role: role.to_owned(),
            text: t.text,
            timestamp: t.timestamp,
        });
    }

    /// The transcript socket is optional: when it goes, audio goes on.
    async fn on_media_opt(&mut self, slot: &mut Option<Socket<C>>, m: Next<C>) -> Option<Ended> {
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

async fn next_opt<C: Connect>(ws: &mut Option<Socket<C>>) -> Next<C> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

async fn send<C: Connect, T: serde::Serialize>(
    ws: &mut Socket<C>,
    message: &T,
) -> Result<(), String> {
    ws.send(C::Message::text(protocol::encode(message)))
        .await
        .map_err(|e| format!("send failed: {e}"))
}

/// Close a socket that carries no data yet (a refused handshake).
async fn close_now<C: Connect>(ws: &mut Socket<C>) {
    let _ = timeout(CLOSE_GRACE, ws.send(C::Message::close(CLOSE_NORMAL))).await;
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

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
