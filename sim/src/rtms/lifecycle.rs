//! A stream's lifecycle (`docs/rtms-protocol.md`): started (the REST call or
//! the control surface), admitted sockets after a signed handshake, active
//! once the client is ready, paused and resumed, interrupted when a socket is
//! lost and ended if none is back within the reconnect window, terminated
//! with a stop reason; each change told to the signaling socket and, where
//! Zoom does, to the app by webhook.
//!
//! All of it is `Shared` methods that hold a stream's lock only for short,
//! non-async sections; sending on sockets is queueing (`conn.rs` does the IO),
//! the audio is the driver's (`driver.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::conn::Exit;
use crate::SimError;
use crate::audio;
use crate::faults::DuplicateSignaling;
use crate::protocol::{self, Handshake, state, status, stop_reason};
use crate::sign;
use crate::state::{Ending, MediaPeer, Peer, Phase, Shared, Stream, lock};
use crate::stats::inc;
use crate::util::now_ms;

impl Shared {
    pub(crate) fn start_stream(&self, engagement_id: &str) -> Result<String, SimError> {
        self.start_stream_at(engagement_id, now_ms())
    }

    /// Start a stream whose audio began at `started_ms` (Unix ms).
    pub(crate) fn start_stream_at(
        &self,
        engagement_id: &str,
        started_ms: i64,
    ) -> Result<String, SimError> {
        let stream = {
            let mut st = lock(&self.state);
            let e =
                st.engagements.get(engagement_id).cloned().ok_or_else(|| {
                    SimError::NotFound(format!("unknown engagement {engagement_id}"))
                })?;
            if e.state != "active" {
                return Err(SimError::BadRequest(format!(
                    "engagement {engagement_id} has ended"
                )));
            }
            if let Some(running) = &e.rtms_stream_id {
                // Starting a running stream is a no-op.
                return Ok(running.clone());
            }
            let agent = st
                .users
                .get(&e.user_id)
                .cloned()
                .unwrap_or_else(|| st.default_user());
            let stream = Arc::new(Stream::new(
                &e,
                agent,
                started_ms,
                self.cancel.child_token(),
            ));
            st.streams.insert(stream.id.clone(), stream.clone());
            if let Some(e) = st.engagements.get_mut(engagement_id) {
                e.rtms_stream_id = Some(stream.id.clone());
            }
            stream
        };
        inc(&self.stats.streams_started);
        self.stats.streams_active.fetch_add(1, Ordering::Relaxed);
        tracing::info!(engagement_id, stream = %stream.id, "RTMS stream started");
        self.announce_started(&stream);
        Ok(stream.id.clone())
    }

    pub(crate) fn stop_stream(&self, engagement_id: &str, reason: i64) -> Result<(), SimError> {
        if self.engagement(engagement_id).is_none() {
            return Err(SimError::NotFound(format!(
                "unknown engagement {engagement_id}"
            )));
        }
        if let Some(stream) = self.stream_of(engagement_id) {
            self.terminate(&stream, reason);
        }
        Ok(())
    }

    pub(crate) fn pause_stream(&self, engagement_id: &str, paused: bool) -> Result<(), SimError> {
        if self.engagement(engagement_id).is_none() {
            return Err(SimError::NotFound(format!(
                "unknown engagement {engagement_id}"
            )));
        }
        let stream = self.stream_of(engagement_id).ok_or_else(|| {
            SimError::BadRequest(format!("engagement {engagement_id} has no running stream"))
        })?;
        self.set_paused(&stream, paused);
        Ok(())
    }

    /// `voice_rtms_started`: where the app connects for this stream (also
    /// the `resend_started` fault).
    pub(crate) fn announce_started(&self, stream: &Stream) {
        self.webhook(
            "contact_center.voice_rtms_started",
            json!({
                "engagement_id": stream.engagement_id,
                "rtms_stream_id": stream.id,
                "server_urls": self.rtms_url.as_str(),
            }),
        );
    }

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
                self.tracker.spawn(super::driver::drive(me, s));
            }
        }
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
    pub(super) fn signaling_gone(&self, stream: &Arc<Stream>, conn_id: u64, exit: Exit) {
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
    pub(super) fn media_gone(&self, stream: &Arc<Stream>, conn_id: u64, exit: Exit) {
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
}
