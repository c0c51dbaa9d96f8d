//! The RTMS engine: consumes Zoom's real-time media streams.
//!
//! Layers: [`protocol`] (message types, encode/decode, no IO), [`meter`]
//! (levels and counts of one stream, no IO), [`backlog`] (audio Zoom replays
//! from its buffer at stream start, told from live audio; pure), [`reconnect`] (what to do after
//! a connection ends: a pure policy), [`lease`] (which instance consumes a
//! stream), [`transport`] (the WebSocket client behind a small trait),
//! [`session`] (one stream's sockets and loop) and [`manager`] (start/stop by
//! id, caps). The types the manager and the sessions share live here, so
//! neither imports the other. Never serves HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::RtmsConfig;
use crate::secret::Secret;
use crate::status::StatusBus;

pub mod backlog;
pub mod lease;
pub mod manager;
pub mod meter;
pub mod protocol;
pub mod reconnect;
pub mod session;
pub mod transport;

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
}

/// Engine-wide counters. Sessions add to them a few times a second, never
/// per frame, so the audio path touches no shared cache line.
#[derive(Debug, Default)]
pub struct EngineCounters {
    pub frames: AtomicU64,
    pub transcripts: AtomicU64,
    pub sessions_started: AtomicU64,
    pub sessions_failed: AtomicU64,
    pub reconnects: AtomicU64,
}

impl EngineCounters {
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
