//! The RTMS engine: consumes Zoom's real-time media streams.
//!
//! Layers: [`protocol`] (message types, encode/decode, no IO), [`meter`]
//! (levels and counts of one stream, no IO), [`backlog`] (audio Zoom replays
//! from its buffer at stream start, told from live audio; pure), [`reconnect`] (what to do after
//! a connection ends: a pure policy), [`lease`] (which instance consumes a
//! stream), [`transport`] (the WebSocket client behind a small trait, over
//! [`polled`]: a TCP socket whose reads can leave the event loop),
//! [`session`] (one stream's sockets and loop) and [`manager`] (start/stop by
//! id, caps). The types the manager and the sessions share live here, so
//! neither imports the other. Never serves HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::RtmsConfig;
use crate::secret::Secret;
use crate::status::StatusBus;

pub mod audio_json;
pub mod backlog;
pub mod lease;
pub mod manager;
pub mod meter;
pub mod polled;
pub mod protocol;
pub mod reconnect;
pub mod session;
pub mod transport;
pub mod ws;

pub use manager::RtmsManager;

/// What identifies a stream and where Zoom serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub engagement_id: String,
    pub rtms_stream_id: String,
    pub server_urls: String,
}

/// What every session needs.
#[derive(Clone)]
pub struct SessionDeps {
    pub client_id: String,
    pub client_secret: Secret,
    pub tls: Arc<rustls::ClientConfig>,
    pub bus: StatusBus,
    pub config: RtmsConfig,
    pub counters: Arc<EngineCounters>,
    /// Call recording (`RECORDINGS_DIR`); None when off.
    pub recorder: Option<crate::recording::Recorder>,
    /// Where audio frames are copied for the downstream feed (`SINK_AUDIO`).
    pub sink: Option<crate::sink::AudioTap>,
}

/// Engine-wide counters. Sessions add to them a few times a second, never
/// per frame, so the audio path touches no shared cache line.
#[derive(Debug, Default)]
pub struct EngineCounters {
    pub frames: AtomicU64,
    pub transcripts: AtomicU64,
    /// Frames and transcript lines by channel role ([`meter::ROLES`] order).
    pub frames_by_role: [AtomicU64; 3],
    pub transcripts_by_role: [AtomicU64; 3],
    pub sessions_started: AtomicU64,
    pub sessions_failed: AtomicU64,
    pub reconnects: AtomicU64,
    /// Reconnections by [`ReconnectReason`] (indexed by `as usize`).
    pub reconnects_by_reason: [AtomicU64; ReconnectReason::ALL.len()],
    /// Handshakes Zoom refused, by RTMS status name (rare: a lock is fine).
    pub handshake_refusals: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Streams taken over from an instance that died.
    pub lease_takeovers: AtomicU64,
    /// Stream leases this instance holds now (with a shared store).
    pub leases_held: AtomicU64,
    /// Keep-alives: from reading Zoom's request to the answer written to
    /// the socket, and how old the request was by then by Zoom's timestamp
    /// (network delay plus any clock offset). A few per stream a minute.
    pub keepalive_answer: KeepAliveTimes,
    pub keepalive_age: KeepAliveTimes,
}

/// A histogram of keep-alive times in seconds (100 µs … ~3 s).
#[derive(Debug, Clone)]
pub struct KeepAliveTimes(pub prometheus_client::metrics::histogram::Histogram);

impl Default for KeepAliveTimes {
    fn default() -> Self {
        Self(prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 16),
        ))
    }
}

/// Why a connection ended before the engine connected again: a closed set,
/// for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectReason {
    /// Lost: closed, silent past the idle timeout, or Zoom said interrupted.
    ConnectionLost,
    /// Zoom refused the handshake with a status it says is transient.
    HandshakeRefused,
    /// Zoom re-sent the start (server fail-over).
    Failover,
}

impl ReconnectReason {
    pub const ALL: [ReconnectReason; 3] = [
        ReconnectReason::ConnectionLost,
        ReconnectReason::HandshakeRefused,
        ReconnectReason::Failover,
    ];

    /// The reason a reconnection after `ended` would have; None for ends
    /// that are never followed by one.
    pub fn of(ended: &reconnect::Ended) -> Option<Self> {
        match ended {
            reconnect::Ended::Lost(_) => Some(Self::ConnectionLost),
            reconnect::Ended::Refused { .. } => Some(Self::HandshakeRefused),
            reconnect::Ended::Restart(_) => Some(Self::Failover),
            reconnect::Ended::Terminated { .. } | reconnect::Ended::Cancelled => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionLost => "connection_lost",
            Self::HandshakeRefused => "handshake_refused",
            Self::Failover => "failover",
        }
    }
}

impl EngineCounters {
    /// Add a session's counts (a few times a second per stream).
    pub fn add(&self, delta: &meter::Unflushed) {
        let (frames, transcripts) = delta.totals();
        self.frames.fetch_add(frames, Ordering::Relaxed);
        self.transcripts.fetch_add(transcripts, Ordering::Relaxed);
        for (i, n) in delta.frames.iter().enumerate() {
            if *n > 0 {
                self.frames_by_role[i].fetch_add(*n, Ordering::Relaxed);
            }
        }
        for (i, n) in delta.transcripts.iter().enumerate() {
            if *n > 0 {
                self.transcripts_by_role[i].fetch_add(*n, Ordering::Relaxed);
            }
        }
    }

    /// (role, frames, transcript lines) for every role.
    pub fn by_role(&self) -> Vec<(&'static str, u64, u64)> {
        meter::ROLES
            .iter()
            .enumerate()
            .map(|(i, role)| {
                (
                    *role,
                    self.frames_by_role[i].load(Ordering::Relaxed),
                    self.transcripts_by_role[i].load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// A reconnection is under way (a few per stream at most, never per frame).
    pub fn reconnected(&self, reason: Option<ReconnectReason>) {
        if let Some(reason) = reason {
            self.reconnects_by_reason[reason as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A keep-alive was answered, `took` after it was read; `sent_ms`:
    /// Zoom's timestamp in it.
    pub fn keepalive(&self, took: std::time::Duration, sent_ms: i64) {
        self.keepalive_answer.0.observe(took.as_secs_f64());
        let age_ms = crate::time::now_ms().saturating_sub(sent_ms).max(0);
        self.keepalive_age.0.observe(age_ms as f64 / 1000.0);
    }

    /// Zoom refused a handshake with RTMS status `code`.
    pub fn handshake_refused(&self, code: i64) {
        let mut by = self
            .handshake_refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *by.entry(protocol::status_name(code)).or_default() += 1;
    }

    /// Reconnections by reason, every reason listed.
    pub fn reconnects_by_reason(&self) -> Vec<(&'static str, u64)> {
        ReconnectReason::ALL
            .iter()
            .map(|r| {
                (
                    r.as_str(),
                    self.reconnects_by_reason[*r as usize].load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Refused handshakes by RTMS status name.
    pub fn handshake_refusals(&self) -> Vec<(&'static str, u64)> {
        self.handshake_refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "frames": self.frames.load(Ordering::Relaxed),
            "transcripts": self.transcripts.load(Ordering::Relaxed),
            "sessions_started": self.sessions_started.load(Ordering::Relaxed),
            "sessions_failed": self.sessions_failed.load(Ordering::Relaxed),
            "reconnects": self.reconnects.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod counter_tests {
    use super::reconnect::Ended;
    use super::*;

    #[test]
    fn reconnections_and_refusals_are_counted_by_a_closed_set_of_names() {
        let c = EngineCounters::default();
        c.reconnected(ReconnectReason::of(&Ended::Lost("idle".into())));
        c.reconnected(ReconnectReason::of(&Ended::Restart("wss://x".into())));
        c.reconnected(ReconnectReason::of(&Ended::Cancelled));
        assert_eq!(
            c.reconnects_by_reason(),
            [
                ("connection_lost", 1),
                ("handshake_refused", 0),
                ("failover", 1)
            ]
        );
        c.handshake_refused(protocol::status::INVALID_SIGNATURE);
        c.handshake_refused(protocol::status::INVALID_SIGNATURE);
        c.handshake_refused(9_999);
        assert_eq!(
            c.handshake_refusals(),
            [("INVALID_SIGNATURE", 2), ("UNKNOWN_STATUS", 1)]
        );
    }
}

/// Sent to a running session by the manager.
#[derive(Debug)]
pub enum Control {
    /// Zoom re-sent `voice_rtms_started` (server failover): redo the
    /// connection, possibly at a new URL.
    Restart { server_urls: String },
    /// Zoom says our signaling dropped (`voice_rtms_interrupted`).
    Interrupted,
    /// Stop now (the session's token is cancelled too; this message makes
    /// the stop immediate while streaming).
    Stop,
}

/// How a whole session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Zoom ended the stream (TERMINATED), with its stop reason.
    Terminated { reason: i64 },
    /// We were asked to stop (stopped webhook, engagement ended, shutdown,
    /// lease taken over).
    Stopped,
    /// Gave up: refused for good, or the reconnection window was spent.
    Failed(String),
}
