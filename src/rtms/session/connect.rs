//! One connection attempt of a session, up to streaming and back: connects
//! to the signaling URL, handshakes, opens the audio socket (and a
//! transcript socket when Zoom offers one), sends CLIENT_READY_ACK, hands
//! the sockets to the streaming loop, then leaves them. Sockets being left
//! (stop, fail-over, reconnection) are closed and read to their end, so
//! frames Zoom already sent are counted. Never decides whether to connect
//! again (the caller's policy does) and never runs the streaming loop.

use std::time::Duration;

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::time::{Instant, timeout, timeout_at};

use super::{MediaPlan, Session, Socket, send};
use crate::rtms::protocol::{self, Incoming, media_type};
use crate::rtms::reconnect::Ended;
use crate::rtms::transport::{CLOSE_AWAY, CLOSE_NORMAL, Connect, WsMessage};

/// How long sockets being left are read for what Zoom already sent.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

impl<C: Connect> Session<C> {
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
    pub(super) async fn open_media(
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

    pub(super) async fn connect_and_stream(&mut self, url: &str) -> Ended {
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
