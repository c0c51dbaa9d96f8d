//! A session's streaming loop on one connection: a `select!` over the
//! signaling and transcript sockets, the manager's control messages and a
//! tick on which the audio socket is read, every frame that came since at
//! once, instead of waking the task per frame. Answers keep-alives on every
//! socket, measures audio per channel, publishes transcripts, reopens a lost
//! audio socket alone and notices silence. Never opens the signaling
//! connection nor decides what happens after it ends (it returns why).

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{FutureExt as _, StreamExt as _};
use tokio::time::{Instant, MissedTickBehavior};

use super::{MediaPlan, Next, Session, Socket, send};
use crate::rtms::Control;
use crate::rtms::backlog::Frame;
use crate::rtms::protocol::{self, Incoming, session_state, stream_state};
use crate::rtms::reconnect::{self, Ended};
use crate::rtms::transport::{Connect, WsMessage};
use crate::status::{Level, TranscriptLine};

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
pub(super) fn to_next_tick() -> Duration {
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

/// When anything was last heard, kept per tick.
struct Silence {
    heard: u64,
    at: Instant,
}

impl<C: Connect> Session<C> {
    pub(super) async fn stream(
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
        let msg = match received::<C>(m, "signaling") {
            Ok(msg) => msg,
            Err(lost) => return Some(lost),
        };
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
        let msg = match received::<C>(m, which) {
            Ok(msg) => msg,
            Err(lost) => return Some(lost),
        };
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
    pub(super) async fn answer_keepalive(
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
    pub(super) fn audio(&mut self, frame: &protocol::AudioFrame<'_>) {
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

    pub(super) fn transcript(&mut self, t: protocol::TranscriptFrame) {
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

/// What came on the `which` socket, unless it ended (closed, failed, or
/// the server's close frame).
fn received<C: Connect>(m: Next<C>, which: &str) -> Result<C::Message, Ended> {
    let msg = match m {
        None => return Err(Ended::Lost(format!("{which} socket closed"))),
        Some(Err(e)) => return Err(Ended::Lost(format!("{which}: {e}"))),
        Some(Ok(m)) => m,
    };
    match msg.close_text() {
        Some(close) => Err(Ended::Lost(format!("{which} closed by server ({close})"))),
        None => Ok(msg),
    }
}

async fn next_opt<C: Connect>(ws: &mut Option<Socket<C>>) -> Next<C> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}
