//! One RTMS stream: the session that owns its sockets, and the loop that
//! reconnects them.
//!
//! [`Session::run`] makes connection attempts (`connect`: connecting, the
//! signaling and media handshakes, leaving) and streams on each one
//! (`stream`: the frames, keep-alives and checks while streaming). What to
//! do when a connection ends is the [`reconnect`](super::reconnect) policy's
//! call; this loop carries it out and publishes every state change (status
//! lines, the stream view). Generic over the WebSocket client ([`Connect`]),
//! so the loop runs on in-memory sockets in tests. Never decides stream
//! ownership.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::SinkExt as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backlog::Backlog;
use super::meter::Meter;
use super::protocol;
use super::reconnect::{Ended, Policy, Step};
use super::transport::{Connect, WsMessage};
use super::{Control, Outcome, SessionDeps, StreamSpec};
use crate::status::{Level, Refreshed};

mod connect;
mod stream;

pub use super::meter::CHUNK_REPORT_EVERY;
pub use connect::CLOSE_GRACE;
pub use stream::MEDIA_TICK;

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
        let meter = &mut self.meter;
        let refreshed = self
            .deps
            .bus
            .refresh_stream(&self.spec.rtms_stream_id, |view| {
                if view.state != "streaming" {
                    view.state = "streaming".to_owned();
                }
                meter.refresh(view);
            });
        if refreshed == Refreshed::Unknown && self.deps.bus.watched(&self.spec.engagement_id) {
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
}

async fn send<C: Connect, T: serde::Serialize>(
    ws: &mut Socket<C>,
    message: &T,
) -> Result<(), String> {
    ws.send(C::Message::text(protocol::encode(message)))
        .await
        .map_err(|e| format!("send failed: {e}"))
}

#[cfg(test)]
mod tests;
